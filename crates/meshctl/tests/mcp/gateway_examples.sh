AUTH="Authorization: Bearer $TOKEN"

# A request: the answer is the agent's response body, as the agent sent it.
curl -sS -H "$AUTH" "$GATEWAY/v1/request" \
  -d "{\"peer\": \"$ECHO\", \"capability\": \"echo\", \"body\": \"hello, mesh\"}"

# A streamed answer as server-sent events: `chunk` events, then `end` (or `error`).
curl -sSN -H "$AUTH" "$GATEWAY/v1/stream" \
  -d "{\"peer\": \"$ECHO\", \"capability\": \"echo.stream\", \"body\": \"one two three\"}"

# Agents offering a capability, online now, with their verified cards.
curl -sS -H "$AUTH" "$GATEWAY/v1/search?capability=echo&online=true"
