// Every data call goes through here: same origin only, the API key (if any) as a Bearer header, errors as messages.

const KEY_NAME = "searchd.apiKey"; // sessionStorage: the key lives as long as this tab, and no other tab sees it

export class ApiError extends Error {
  constructor(status, message, body = null, retryAfter = null) {
    super(message);
    this.status = status;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

function messageOf(body, response) {
  const errors = body && Array.isArray(body.error) ? body.error : null;
  if (errors && errors.length) return errors.map((e) => e.message).join("; ");
  if (typeof body === "string" && body) return `HTTP ${response.status}: ${body.slice(0, 300)}`;
  return `HTTP ${response.status} ${response.statusText}`;
}

export class Api {
  constructor(onUnauthorized) {
    this.onUnauthorized = onUnauthorized;
  }

  get key() {
    return sessionStorage.getItem(KEY_NAME) || "";
  }

  setKey(key) {
    sessionStorage.setItem(KEY_NAME, key);
  }

  forgetKey() {
    sessionStorage.removeItem(KEY_NAME);
  }

  headers(json) {
    const headers = { Accept: "application/json" };
    if (json) headers["Content-Type"] = "application/json";
    if (this.key) headers.Authorization = `Bearer ${this.key}`;
    return headers;
  }

  async call(method, path, body) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: this.headers(body !== undefined),
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
      });
    } catch (error) {
      throw new ApiError(0, `searchd did not answer (${error.message}); is it still running?`);
    }
    const text = await response.text();
    let data = text;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: kept as text for the message
    }
    if (response.status === 401) this.onUnauthorized(messageOf(data, response));
    if (!response.ok) throw new ApiError(response.status, messageOf(data, response), data, response.headers.get("Retry-After"));
    return data;
  }

  get(path) {
    return this.call("GET", path);
  }

  post(path, body) {
    return this.call("POST", path, body);
  }

  // GraphQL answers 200 with {data, errors}; the caller decides what errors mean.
  graphql(query, variables) {
    return this.post("/v1/graphql", variables ? { query, variables } : { query });
  }
}
