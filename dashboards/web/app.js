// The upload page: sign in with Cognito (USER_PASSWORD_AUTH), ask the API for a presigned POST, upload with
// XMLHttpRequest (fetch has no upload progress), then poll GET /images/{id} until the image is DONE or FAILED.
// Plain ES module, no build step; config.json next to the page says where the API and Cognito are.

const POLL_EVERY_MS = 1000;
// The worker usually answers in a second or two; a queue backlog or retries can take longer.
const POLL_FOR_MS = 120_000;

const $ = (id) => document.getElementById(id);

// Browsers leave File.type empty for types the system does not know (HEIC/AVIF on many); the API needs one.
const TYPES_BY_EXTENSION = {
  jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png", webp: "image/webp",
  heic: "image/heic", heif: "image/heif", avif: "image/avif",
};

function contentType(file) {
  const extension = file.name.split(".").pop().toLowerCase();
  return file.type || TYPES_BY_EXTENSION[extension] || "application/octet-stream";
}

let config = null;
let session = null; // { username, accessToken }

function show(element, text) {
  element.textContent = text;
  element.hidden = !text;
}

function joinUrl(base, path) {
  return `${base.replace(/\/+$/, "")}/${path.replace(/^\/+/, "")}`;
}

// fetch() that fails in words a user understands: a browser reports an unreachable server, a refused CORS
// preflight and a blocked request all alike, as a bare "Failed to fetch" (TypeError), and hides which.
async function reach(service, url, init) {
  try {
    return await fetch(url, init);
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    const origin = new URL(url, window.location.href).origin;
    throw new Error(
      `Cannot reach the ${service} at ${origin}. Check that it is running and that it allows this page ` +
        `(${window.location.origin}); the browser's console has the details.`,
    );
  }
}

// An API Gateway / Lambda / Cognito refusal as one readable sentence.
async function errorMessage(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    const message = body.message ?? body.Message;
    if (message) return String(message);
  } catch {
    // not JSON: fall through
  }
  return `${response.status} ${response.statusText || "error"}`.trim();
}

// S3 answers a refused POST with XML: <Error><Code>…</Code><Message>…</Message></Error>.
function s3Message(xhr) {
  const xml = new DOMParser().parseFromString(xhr.responseText || "", "application/xml");
  const message = xml.querySelector("Message")?.textContent;
  return message ? `upload refused: ${message}` : `upload failed: HTTP ${xhr.status}`;
}

async function loadConfig() {
  const response = await reach("page's server", "config.json", { cache: "no-store" });
  if (!response.ok) throw new Error(`config.json: HTTP ${response.status}`);
  config = await response.json();
  for (const key of ["apiUrl", "cognitoEndpoint", "userPoolClientId"]) {
    if (!config[key]) throw new Error(`config.json has no ${key}`);
  }
}

async function signIn(username, password) {
  const response = await reach("sign-in service", config.cognitoEndpoint, {
    method: "POST",
    headers: {
      "Content-Type": "application/x-amz-json-1.1",
      "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
    },
    body: JSON.stringify({
      AuthFlow: "USER_PASSWORD_AUTH",
      ClientId: config.userPoolClientId,
      AuthParameters: { USERNAME: username, PASSWORD: password },
    }),
  });
  if (!response.ok) throw new Error(await errorMessage(response));
  const body = await response.json();
  if (body.ChallengeName) {
    // Operators create users with a temporary password; this page does not walk through challenges.
    throw new Error(`Cognito asks for ${body.ChallengeName}; finish it with the CLI first, then sign in here.`);
  }
  // The API's authorizer takes access tokens (pipeline/auth.py), not ID tokens.
  return body.AuthenticationResult.AccessToken;
}

async function api(method, path, body) {
  const response = await reach("image API", joinUrl(config.apiUrl, path), {
    method,
    headers: {
      Authorization: `Bearer ${session.accessToken}`,
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    signOut();
    show($("signin-error"), "Your session has expired: sign in again.");
    throw new Error("signed out");
  }
  return response;
}

function uploadWithProgress(grant, file, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(grant.fields)) form.append(name, value);
    form.append("file", file); // S3 ignores every field after the file
    const xhr = new XMLHttpRequest();
    xhr.open("POST", grant.upload_url);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve();
      } else {
        reject(new Error(s3Message(xhr)));
      }
    });
    xhr.addEventListener("error", () => reject(new Error("upload failed: the storage endpoint did not answer")));
    xhr.addEventListener("abort", () => reject(new Error("upload aborted")));
    xhr.send(form);
  });
}

function setProgress(fraction) {
  const percent = Math.round(fraction * 100);
  $("progress").value = percent;
  $("progress-text").textContent = `${percent} %`;
}

function setStatus(status, text) {
  const element = $("status");
  element.dataset.status = status;
  element.textContent = text;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitForImage(imageId) {
  const deadline = Date.now() + POLL_FOR_MS;
  while (Date.now() < deadline) {
    const response = await api("GET", `images/${encodeURIComponent(imageId)}`);
    if (response.status === 404) {
      setStatus("QUEUED", "Uploaded; waiting for the worker…");
    } else if (!response.ok) {
      throw new Error(await errorMessage(response));
    } else {
      const image = await response.json();
      if (image.status === "DONE" || image.status === "FAILED") return image;
      setStatus(image.status, `${image.status.toLowerCase()}…`);
    }
    await sleep(POLL_EVERY_MS);
  }
  throw new Error(`no result after ${POLL_FOR_MS / 1000} s; the image ${imageId} may still finish later`);
}

function sizeOf(label) {
  const number = Number.parseInt(label, 10);
  return Number.isNaN(number) ? Number.MAX_SAFE_INTEGER : number;
}

function showThumbnails(thumbnails) {
  const box = $("thumbnails");
  box.replaceChildren();
  const entries = Object.entries(thumbnails ?? {}).sort(([a], [b]) => sizeOf(a) - sizeOf(b));
  for (const [label, url] of entries) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.alt = `thumbnail ${label}`;
    img.src = url;
    img.dataset.size = label;
    const caption = document.createElement("figcaption");
    caption.textContent = /^\d+$/.test(label) ? `${label} px` : label;
    img.addEventListener("load", () => {
      caption.textContent += ` · ${img.naturalWidth}×${img.naturalHeight}`;
    });
    const link = document.createElement("a");
    link.href = url;
    link.target = "_blank";
    link.rel = "noopener";
    link.append(img);
    figure.append(link, caption);
    box.append(figure);
  }
}

async function upload(file) {
  show($("upload-error"), "");
  $("thumbnails").replaceChildren();
  setProgress(0);
  setStatus("", "Requesting an upload URL…");
  const response = await api("POST", "uploads", { content_type: contentType(file), method: "POST" });
  if (!response.ok) {
    setStatus("", "");
    throw new Error(await errorMessage(response));
  }
  const grant = await response.json();
  setStatus("UPLOADING", `Uploading ${file.name}…`);
  await uploadWithProgress(grant, file, setProgress);
  setStatus("QUEUED", "Uploaded; waiting for the worker…");
  const image = await waitForImage(grant.image_id);
  if (image.status === "DONE") {
    setStatus("DONE", "DONE: thumbnails ready");
    showThumbnails(image.thumbnails);
  } else {
    setStatus("FAILED", `FAILED: ${image.reason ?? "no reason given"}`);
  }
}

function signedIn(username, accessToken) {
  session = { username, accessToken };
  $("who").textContent = username;
  $("signin").hidden = true;
  $("upload").hidden = false;
  $("password").value = "";
}

function signOut() {
  session = null;
  $("signin").hidden = false;
  $("upload").hidden = true;
}

function busy(button, isBusy) {
  button.disabled = isBusy;
}

function wire() {
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const username = $("username").value.trim();
    show($("signin-error"), "");
    busy($("signin-button"), true);
    try {
      signedIn(username, await signIn(username, $("password").value));
    } catch (error) {
      show($("signin-error"), error.message);
    } finally {
      busy($("signin-button"), false);
    }
  });
  $("signout-button").addEventListener("click", signOut);
  $("upload-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = $("file").files[0];
    if (!file) return;
    busy($("upload-button"), true);
    try {
      await upload(file);
    } catch (error) {
      show($("upload-error"), error.message);
    } finally {
      busy($("upload-button"), false);
    }
  });
}

async function main() {
  wire();
  try {
    await loadConfig();
  } catch (error) {
    show($("config-error"), `The page cannot start: ${error.message}`);
    $("signin-button").disabled = true;
    return;
  }
  document.body.dataset.ready = "true";
}

main();
