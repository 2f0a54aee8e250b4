// The controller's API, read relative to the page so that the page also works behind a proxy
// that serves it under a path prefix.

/// A request that did not give the answer it should: `unreachable` when no HTTP answer came.
export class ApiError extends Error {
  constructor(path, message, { status = null, unreachable = false } = {}) {
    super(`${path}: ${message}`);
    this.path = path;
    this.status = status;
    this.unreachable = unreachable;
  }
}

const TIMEOUT_MS = 5000;

/// GETs `api/<path>` as JSON; `allow` lists statuses other than 200 whose JSON body is wanted
/// (the answer is then `{status, body}`).
export async function get(path, { allow = [] } = {}) {
  const url = `api/${path}`;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
  let response;
  try {
    response = await fetch(url, { signal: abort.signal, cache: "no-store" });
  } catch (err) {
    const why = err.name === "AbortError" ? `no answer within ${TIMEOUT_MS / 1000} s` : err.message;
    throw new ApiError(url, why, { unreachable: true });
  } finally {
    clearTimeout(timer);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(url, `answered ${response.status} without JSON`, { status: response.status });
  }
  if (response.status === 200) return allow.length ? { status: 200, body } : body;
  if (allow.includes(response.status)) return { status: response.status, body };
  const message = body && typeof body.error === "string" ? body.error : JSON.stringify(body);
  throw new ApiError(url, `${response.status}: ${message}`, { status: response.status });
}
