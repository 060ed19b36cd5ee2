//! Small formatting helpers for the views: times, names, avatar colours.

use mesh_client::rt::unix_ms;

/// `14:05` in the browser's time zone.
pub fn clock(ms: u64) -> String {
    let d = js_sys::Date::new(&(ms as f64).into());
    format!("{:02}:{:02}", d.get_hours(), d.get_minutes())
}

/// `14:05` today, `Mon 14:05` this week, else `3 Mar`.
pub fn when(ms: u64) -> String {
    let age = unix_ms().saturating_sub(ms);
    let d = js_sys::Date::new(&(ms as f64).into());
    let today = js_sys::Date::new_0();
    let same_day = d.get_date() == today.get_date()
        && d.get_month() == today.get_month()
        && d.get_full_year() == today.get_full_year();
    if same_day {
        return clock(ms);
    }
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    if age < 6 * 86_400_000 {
        return format!("{} {}", DAYS[d.get_day() as usize % 7], clock(ms));
    }
    format!("{} {}", d.get_date(), MONTHS[d.get_month() as usize % 12])
}

/// `just now`, `5 min ago`, `3 h ago`, `2 days ago`.
pub fn ago(ms: u64) -> String {
    let s = unix_ms().saturating_sub(ms) / 1000;
    match s {
        0..=59 => "just now".into(),
        60..=3_599 => format!("{} min ago", s / 60),
        3_600..=86_399 => format!("{} h ago", s / 3_600),
        86_400..=172_799 => "yesterday".into(),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// Up to two initials for an avatar.
pub fn initials(name: &str) -> String {
    let s: String = name
        .split_whitespace()
        .take(2)
        .filter_map(|w| w.chars().next())
        .flat_map(char::to_uppercase)
        .collect();
    if s.is_empty() {
        "?".into()
    } else {
        s
    }
}

/// A stable hue (0–359) for an avatar, from the did.
pub fn hue(did: &str) -> u32 {
    did.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    }) % 360
}
