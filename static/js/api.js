// REST helpers. A `?token=X` on the page URL is passed on: as `Authorization: Bearer X` on
// fetches, and as `?token=X` on URLs the browser loads by itself (images, downloads, the socket).

export const token = new URLSearchParams(location.search).get("token") || null;

/** `path` with the token added as a query parameter (for <img src>, <a href>, the websocket). */
export function withToken(path) {
  if (!token) return path;
  return path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
}

export function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return withToken(`${scheme}//${location.host}/ws`);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** fetch JSON with the token; throws ApiError with the server's {code, message}. */
export async function api(path, options = {}) {
  const res = await call(path, options);
  return res.status === 204 ? null : res.json();
}

/** A route's body as a Blob (an image); throws ApiError like api(). */
export async function apiBlob(path, options = {}) {
  return (await call(path, options)).blob();
}

async function call(path, { method = "GET", body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "network", `cannot reach the server (${e.message})`);
  }
  if (res.ok) return res;
  let data = null;
  try {
    data = await res.json();
  } catch {
    /* not JSON */
  }
  throw new ApiError(res.status, data?.code || "http", data?.message || `${method} ${path}: HTTP ${res.status}`);
}

const gid = (id) => encodeURIComponent(id);
export const thumbUrl = (id) => withToken(`/api/genomes/${gid(id)}/thumbnail.jpg`);
export const nokenUrl = (id) => withToken(`/api/genomes/${gid(id)}/embedding.safetensors`);
/** A walk video's render job (POST starts it, GET reports progress); `size` null keeps the walk's size. */
export const videoJobPath = (walkId, { format = "mp4", fps = 12, size = null } = {}) =>
  `/api/walks/${gid(walkId)}/video?format=${format}&fps=${fps}` + (size ? `&width=${size}&height=${size}` : "");

export const listGenomes = () => api("/api/genomes?limit=200").then((d) => d.genomes);
export const deleteGenome = (id) => api(`/api/genomes/${gid(id)}`, { method: "DELETE" });
export const breedGenomes = (parents, seed, mutation) =>
  api("/api/breed", { method: "POST", body: { parents, seed: seed ?? null, mutation } });
/** One frame rendered by the server (POST /api/render): a Blob of the asked `format`. */
export const renderImage = (request) => apiBlob("/api/render", { method: "POST", body: request });
