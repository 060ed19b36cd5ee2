// Type declarations of the `agent-mesh` package: the public surface of
// every runtime entry (browser, Node, Deno, Workers). Written by hand so that
// nothing in the public API is `any`; the wasm-bindgen glue's own
// declarations (dist/mesh_wasm.d.ts) are internal.

/**
 * Loads the WebAssembly module. Required once in browsers before anything
 * else; a no-op in Node, Deno and Workers, where the module is instantiated
 * on import. `source` (browsers): a URL, a `Response`, bytes or a compiled
 * `WebAssembly.Module`; by default the `.wasm` shipped next to the entry.
 */
export function init(source?: string | URL | Response | BufferSource | WebAssembly.Module): Promise<void>;
export default init;

/** The package (crate) version. */
export function version(): string;

/** Every `code` an error from this package may carry. */
export function errorCodes(): ErrorCode[];

/** Whether `e` is an error raised by this package (it has a string `code`). */
export function isMeshError(e: unknown): e is MeshError;

/**
 * Error codes, as listed in docs/PROTOCOL.md §10, `unrecognized` (a code
 * from a newer relay or peer that this build does not know), plus this
 * package's `invalid_argument` (a bad argument or option) and `storage`
 * (IndexedDB).
 */
export type ErrorCode =
  | "malformed_frame"
  | "unsupported_version"
  | "frame_too_large"
  | "not_authenticated"
  | "auth_timeout"
  | "bad_signature"
  | "wrong_relay"
  | "revoked"
  | "rate_limited"
  | "too_many_connections"
  | "replaced"
  | "going_away"
  | "unknown_recipient"
  | "inbox_full"
  | "resume_rejected"
  | "internal"
  | "unexpected_frame"
  | "heartbeat_timeout"
  | "denied"
  | "unknown_capability"
  | "timeout"
  | "cancelled"
  | "handler_failed"
  | "bad_request"
  | "payload_too_large"
  | "unreachable"
  | "protocol"
  | "unrecognized"
  | "invalid_argument"
  | "storage";

/** Every rejected promise and thrown error of this package. */
export interface MeshError extends Error {
  name: "MeshError";
  /** Stable, machine-readable; see {@link ErrorCode}. */
  code: ErrorCode;
  /** With `rate_limited`: how long to wait before retrying. */
  retryAfterMs?: number;
}

/**
 * A request or response body: bytes as they are, a string as UTF-8, and any
 * other value as its JSON text. `undefined` is an empty body.
 */
export type Body = Uint8Array | ArrayBuffer | ArrayBufferView | string | JsonValue | undefined;

/** A value `JSON.stringify` turns into JSON text. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** An agent id: `did:key:z6Mk…` (an Ed25519 public key). */
export type AgentId = string;

/**
 * An agent identity: an Ed25519 secret key. Whoever holds the secret *is*
 * the agent. `free()` wipes it from WebAssembly memory.
 */
export class Identity {
  private constructor();
  /** A new identity from the platform's secure random source (`crypto.getRandomValues`). */
  static generate(): Identity;
  /** An identity from its 32 secret bytes or the text `exportSecret()` returns. */
  static fromSecret(secret: Uint8Array | string): Identity;
  /** The identity saved in IndexedDB under `key` (default `"identity"`), or `null`. Browsers and Web Workers only. */
  static load(key?: string): Promise<Identity | null>;
  /** The identity saved under `key`, or a new one saved there first. Browsers and Web Workers only. */
  static loadOrCreate(key?: string): Promise<Identity>;
  /** Deletes the identity saved under `key`. Browsers and Web Workers only. */
  static forget(key?: string): Promise<void>;
  /** Saves this identity in IndexedDB under `key` (default `"identity"`). Browsers and Web Workers only. */
  save(key?: string): Promise<void>;
  /** The secret as text (`z3u2…`), to back it up. */
  exportSecret(): string;
  /** The 32 secret bytes. */
  exportSecretBytes(): Uint8Array;
  /** The agent id, `did:key:z6Mk…`. */
  readonly agentId: AgentId;
  /** A short form of the agent id, for display. */
  readonly short: string;
  /** The safety number shared with `peerId` (sixty digits in twelve groups); both sides see the same. */
  safetyNumber(peerId: AgentId): string;
  /** `Identity(did:key:…)`; never the secret. */
  toString(): string;
  /** Wipes the secret from WebAssembly memory; the object is unusable afterwards. */
  free(): void;
}

/** A WebSocket constructor, e.g. the `ws` package's default export. */
export type WebSocketConstructor = new (url: string) => unknown;

/** One ACL rule: first match decides; no match denies. */
export interface AclRule {
  /** A did:key, or `"*"` for anyone. */
  source: AgentId | "*";
  /** Capability names or patterns: `"echo"`, `"summarize.*"`, `"*"`. Chat is `"mesh.chat"`. */
  capabilities: string[];
  action: "allow" | "deny";
}

/** Who may call which of our capabilities (and chat with us). The default denies everything. */
export interface AclPolicy {
  rule: AclRule[];
}

export interface ConnectOptions {
  /** Default timeout of `request` (ms). Default 30,000. */
  requestTimeoutMs?: number;
  /** Time allowed for one connection attempt (ms). Default 10,000. */
  connectTimeoutMs?: number;
  /** Our ACL policy. Default: deny everything. */
  acl?: AclPolicy;
  /** The registry's base URL; default: the relay's host over http(s). */
  registryUrl?: string;
  /**
   * A WebSocket implementation for runtimes without a global one (Node 20:
   * `import WebSocket from "ws"`). Applies to this and later connections.
   */
  WebSocket?: WebSocketConstructor;
}

export interface RequestOptions {
  /** Timeout (ms): of the whole request, or of each chunk of a stream. */
  timeoutMs?: number;
  /** Aborting it cancels the request; the cancel reaches the remote handler. */
  signal?: AbortSignal;
}

/** The connection to the relay. */
export interface ConnectionState {
  state: "connecting" | "online" | "offline" | "revoked" | "closed";
  /** With `closed`: why. */
  reason?: string;
}

/** A response body with `fetch`-like readers. */
export class MeshResponse {
  private constructor();
  /** The raw bytes. */
  readonly body: Uint8Array;
  /** The body as UTF-8 text. */
  text(): string;
  /** The body parsed as JSON. */
  json<T = JsonValue>(): T;
  free(): void;
}

/**
 * A streamed answer: an async iterable of `Uint8Array` chunks, in order.
 * Leaving a `for await` loop early, `cancel()`, or the request's
 * `AbortSignal` cancels the request at the peer.
 */
export class ResponseStream implements AsyncIterableIterator<Uint8Array> {
  private constructor();
  next(): Promise<IteratorResult<Uint8Array, undefined>>;
  return(): Promise<IteratorResult<Uint8Array, undefined>>;
  [Symbol.asyncIterator](): ResponseStream;
  /** Stops the stream at once (a pending `next()` resolves done) and cancels the request at the peer. */
  cancel(): Promise<IteratorResult<Uint8Array, undefined>>;
  /** The chunks as a WHATWG `ReadableStream`. */
  toReadableStream(): ReadableStream<Uint8Array>;
  free(): void;
}

/** A request arriving for one of our capabilities (after the ACL allowed it). */
export class IncomingRequest {
  private constructor();
  /** The sender, proved by the Noise handshake. */
  readonly from: AgentId;
  readonly capability: string;
  readonly body: Uint8Array;
  /** Aborts when the requester cancels or goes away. */
  readonly signal: AbortSignal;
  /** The body as UTF-8 text. */
  text(): string;
  /** The body parsed as JSON. */
  json<T = JsonValue>(): T;
}

/**
 * Serves a capability: the (awaited) return value is the response. A thrown
 * error becomes a `handler_failed` reply, or `bad_request` if the error's
 * `code` is `"bad_request"`.
 */
export type Handler = (request: IncomingRequest) => Body | Promise<Body>;

/** Serves a capability with a stream: each value the iterable yields is one chunk. */
export type StreamHandler = (
  request: IncomingRequest,
) => AsyncIterable<Body> | Iterable<Body> | Promise<AsyncIterable<Body> | Iterable<Body>>;

/** Chat messages, receipts and delivery news. Message ids are decimal strings. */
export type MessageEvent =
  | {
      type: "chat";
      from: AgentId;
      msgId: string;
      /** The sender's clock (Unix ms; display only). */
      sentAt: number;
      text: string;
      /** Whether our ACL allows chat (`mesh.chat`) from the sender; if not, treat it as a contact request. */
      allowed: boolean;
    }
  | { type: "receipt"; from: AgentId; msgId: string; kind: "delivered" | "read" }
  | { type: "queued"; peer: AgentId; msgId: string }
  | { type: "failed"; peer: AgentId; msgId: string; error: MeshError };

/** An A2A skill on an Agent Card. */
export interface Skill {
  /** The capability name requests use. */
  id: string;
  name: string;
  description: string;
  tags?: string[];
  examples?: string[];
  inputModes?: string[];
  outputModes?: string[];
  /** A JSON Schema of the request body. */
  inputSchema?: JsonValue;
}

/** What `publishCard` needs; the rest of the card is filled in and signed. */
export interface CardInput {
  name: string;
  description?: string;
  version?: string;
  /** Whether some skills stream their answers. */
  streaming?: boolean;
  skills?: Skill[];
}

/** A signed A2A Agent Card as the registry serves it (verified by this package). */
export interface AgentCard {
  name: string;
  description: string;
  version: string;
  skills: Skill[];
  capabilities: { streaming?: boolean; pushNotifications?: boolean };
  /** The mesh binding: who, where, when. */
  mesh: { agentId: AgentId; relayUrl: string; issuedAt: number; seq: number };
  [field: string]: unknown;
}

/** A verified card with the relay's view of the agent's presence. */
export interface CardEntry {
  agentId: AgentId;
  card: AgentCard;
  online: boolean;
  /** When the relay last saw the agent (Unix ms), if it has. */
  lastSeen: number | null;
}

export interface SearchQuery {
  /** A skill id or tag, exactly. */
  capability?: string;
  /** Free text; every word matches as a prefix. */
  text?: string;
  /** Only agents connected now. */
  online?: boolean;
  /** Page size, 1–100. */
  limit?: number;
  /** `nextCursor` of the previous page. */
  cursor?: string;
}

export interface SearchPage {
  items: CardEntry[];
  /** Cards the registry returned that failed verification (left out). */
  rejected: number;
  nextCursor: string | null;
}

/** One authenticated connection to a relay; reconnects and resumes by itself. */
export class MeshClient {
  private constructor();
  /** Connects to `relayUrl` (`ws://…/v1/ws` or `wss://…/v1/ws`) and resolves once authenticated. */
  static connect(relayUrl: string, identity: Identity, options?: ConnectOptions): Promise<MeshClient>;
  /** Our agent id. */
  readonly agentId: AgentId;
  /** The connection state now. */
  readonly state: ConnectionState;
  /** The ACL policy in force. */
  readonly acl: AclPolicy;
  /** Sends `body` to `peerId`'s `capability`, end-to-end encrypted, and resolves with the answer. */
  request(peerId: AgentId, capability: string, body?: Body, options?: RequestOptions): Promise<MeshResponse>;
  /** Starts a streamed request. */
  requestStream(peerId: AgentId, capability: string, body?: Body, options?: RequestOptions): ResponseStream;
  /** Serves `capability` (allow it in the ACL too). */
  handle(capability: string, handler: Handler): void;
  /** Serves `capability` with a streamed answer. */
  handleStream(capability: string, handler: StreamHandler): void;
  /** Stops serving `capability`. */
  unhandle(capability: string): void;
  /** Replaces the ACL policy. */
  setAcl(policy: AclPolicy): void;
  /** Sends a chat message; returns its id. Delivery news arrives through `onMessage`. */
  sendMessage(peerId: AgentId, text: string): string;
  /** Tells `peerId` that we read its message `msgId`. */
  sendReadReceipt(peerId: AgentId, msgId: string): void;
  /** Subscribes to chat messages, receipts and delivery news; returns an unsubscribe function. */
  onMessage(callback: (event: MessageEvent) => void): () => void;
  /** Calls `callback` with the current state and every change; returns an unsubscribe function. */
  onStateChange(callback: (state: ConnectionState) => void): () => void;
  /** Signs and publishes our Agent Card; resolves with its sequence number. */
  publishCard(card: CardInput): Promise<number>;
  /** Withdraws our card (a signed request). */
  unpublishCard(): Promise<void>;
  /** The verified card of `agentId`, or `null`. */
  getCard(agentId: AgentId): Promise<CardEntry | null>;
  /** Searches the registry; every card returned is verified here. */
  search(query?: SearchQuery): Promise<SearchPage>;
  /** Closes the connection; pending requests fail with `going_away`. */
  close(): Promise<void>;
  free(): void;
}
