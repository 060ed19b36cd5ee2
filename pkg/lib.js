// The runtime-independent part of the package: the wasm-bindgen classes,
// with the JavaScript conveniences that are easier to express here than in
// Rust (async iteration, ReadableStream, request helpers). Every entry in
// ./entry initialises the WebAssembly module its own way and re-exports this.
import {
  Identity,
  MeshClient,
  MeshResponse,
  ResponseStream,
  errorCodes,
  version,
} from "./dist/mesh_wasm.js";

const decoder = new TextDecoder();

// `for await (const chunk of stream)`: the stream is its own iterator;
// leaving the loop early (`break`, `return`, a throw) cancels the request.
ResponseStream.prototype[Symbol.asyncIterator] = function () {
  return this;
};
ResponseStream.prototype.return = function () {
  return this.cancel();
};

/** The chunks as a WHATWG ReadableStream of Uint8Array. */
ResponseStream.prototype.toReadableStream = function () {
  const stream = this;
  return new ReadableStream({
    async pull(controller) {
      try {
        const { done, value } = await stream.next();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (e) {
        controller.error(e);
      }
    },
    cancel() {
      return stream.cancel();
    },
  });
};

/** What a handler receives: the verified sender, the body and helpers. */
class IncomingRequest {
  constructor(raw) {
    this.from = raw.from;
    this.capability = raw.capability;
    this.body = raw.body;
    this.signal = raw.signal;
  }
  text() {
    return decoder.decode(this.body);
  }
  json() {
    return JSON.parse(this.text());
  }
}

function checkHandler(handler) {
  if (typeof handler !== "function") {
    const e = new Error("a handler must be a function");
    e.name = "MeshError";
    e.code = "invalid_argument";
    throw e;
  }
}

const rawHandle = MeshClient.prototype.handle;
MeshClient.prototype.handle = function (capability, handler) {
  checkHandler(handler);
  return rawHandle.call(this, capability, (raw) => handler(new IncomingRequest(raw)));
};

const rawHandleStream = MeshClient.prototype.handleStream;
MeshClient.prototype.handleStream = function (capability, handler) {
  checkHandler(handler);
  return rawHandleStream.call(this, capability, (raw) => handler(new IncomingRequest(raw)));
};

/** Whether `e` is an error raised by this package (it has a `code`). */
function isMeshError(e) {
  return e instanceof Error && typeof e.code === "string";
}

export {
  Identity,
  MeshClient,
  MeshResponse,
  ResponseStream,
  IncomingRequest,
  errorCodes,
  isMeshError,
  version,
};
