// Calls to the Outrider API with the signed-in key (Authorization header only: the key
// never goes into a URL or a cookie). A 401 anywhere ends the session.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export class Unauthorized extends ApiError {
  constructor(message) {
    super(401, "unauthorized", message || "401 Unauthorized");
  }
}

export function isAbort(error) {
  return error instanceof DOMException && error.name === "AbortError";
}

async function errorOf(response) {
  let code = `http_${response.status}`;
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (body && body.error) {
      code = String(body.error.code || code);
      message = String(body.error.message || message);
    }
  } catch {
    // not JSON: keep the status line
  }
  return response.status === 401 ? new Unauthorized(message) : new ApiError(response.status, code, message);
}

// One session's client: every request carries the key and the session's abort signal.
export class Api {
  constructor(key, signal, onUnauthorized) {
    this.key = key;
    this.signal = signal;
    this.onUnauthorized = onUnauthorized;
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.key}`, ...extra };
  }

  async request(method, path, body) {
    const init = {
      method,
      headers: this.headers({ Accept: "application/json" }),
      cache: "no-store",
      credentials: "omit",
      signal: this.signal,
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    if (!response.ok) {
      const error = await errorOf(response);
      if (error instanceof Unauthorized) this.onUnauthorized(error.message);
      throw error;
    }
    return response.json();
  }

  get(path) {
    return this.request("GET", path);
  }

  post(path, body) {
    return this.request("POST", path, body);
  }

  patch(path, body) {
    return this.request("PATCH", path, body);
  }
}

// Checks a key before it is kept: resolves if the API accepts it.
export async function checkKey(key) {
  const response = await fetch("/v1/agents?limit=1", {
    headers: { Authorization: `Bearer ${key}`, Accept: "application/json" },
    cache: "no-store",
    credentials: "omit",
  });
  if (!response.ok) throw await errorOf(response);
}
