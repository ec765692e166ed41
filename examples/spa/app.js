// A single-page app signing its user in with Ostiary: the authorization code flow with PKCE
// (S256) as a public client (no secret), tokens from /token and claims from /userinfo with
// fetch() across origins (CORS), a refresh, and RP-Initiated Logout.
//
// Only a sign-in or sign-out in progress is kept, in sessionStorage (the PKCE verifier, state
// and nonce; the sign-out's state). The tokens live in this page's memory: a reload forgets
// them, and "Sign in" then comes straight back while Ostiary's session lasts.

const PENDING_SIGN_IN = "example-spa:sign-in";
const PENDING_SIGN_OUT = "example-spa:sign-out";
const SCOPE = "openid profile email";
const LEEWAY = 60; // seconds of clock difference allowed on exp and iat

const $ = (id) => document.getElementById(id);
let config; // {issuer, client_id, redirect_uri, post_logout_redirect_uri}, from /config.json
let provider; // the issuer's discovery document
let tokens = null; // the last token response, with expires_at
let idClaims = null; // the claims of the last ID token

function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64url(text) {
  const binary = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function randomString(bytes = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}

async function s256(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

async function getJSON(url, options = {}) {
  const response = await fetch(url, { ...options, cache: "no-store" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const reason = [body.error, body.error_description].filter(Boolean).join(": ");
    throw new Error(`${new URL(url).pathname} answered ${response.status}${reason ? ` (${reason})` : ""}`);
  }
  return body;
}

function post(fields) {
  return { method: "POST", body: new URLSearchParams(fields) };
}

async function signIn() {
  const pending = { verifier: randomString(), state: randomString(16), nonce: randomString(16) };
  sessionStorage.setItem(PENDING_SIGN_IN, JSON.stringify(pending));
  const params = new URLSearchParams({
    response_type: "code",
    client_id: config.client_id,
    redirect_uri: config.redirect_uri,
    scope: SCOPE,
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: await s256(pending.verifier),
    code_challenge_method: "S256",
  });
  location.assign(`${provider.authorization_endpoint}?${params}`);
}

async function finishSignIn(params) {
  const pending = JSON.parse(sessionStorage.getItem(PENDING_SIGN_IN) || "null");
  sessionStorage.removeItem(PENDING_SIGN_IN);
  history.replaceState(null, "", "/"); // the code is spent either way: out of the address bar
  if (!pending || params.get("state") !== pending.state) {
    throw new Error("This answer does not belong to a sign-in started here (state).");
  }
  if (params.has("error")) {
    throw new Error(`${params.get("error")}: ${params.get("error_description") || "no description"}`);
  }
  if (params.get("iss") !== provider.issuer) {
    throw new Error("The answer does not name the expected issuer (RFC 9207).");
  }
  const response = await getJSON(
    provider.token_endpoint,
    post({
      grant_type: "authorization_code",
      code: params.get("code"),
      redirect_uri: config.redirect_uri,
      client_id: config.client_id,
      code_verifier: pending.verifier,
    }),
  );
  accept(response, pending.nonce);
  await showSignedIn("Signed in.");
}

// The ID token comes straight from the token endpoint, so its signature may go unchecked
// (OpenID Connect Core §3.1.3.7, 6.: TLS authenticates the issuer in production); its
// claims are checked here. A refreshed one must name the same user (§12.2).
function accept(response, nonce) {
  const claims = JSON.parse(new TextDecoder().decode(fromBase64url(response.id_token.split(".")[1])));
  const now = Date.now() / 1000;
  const audiences = [].concat(claims.aud);
  const problems = [
    [claims.iss !== provider.issuer, "iss"],
    [!audiences.includes(config.client_id), "aud"],
    [audiences.length > 1 && claims.azp !== config.client_id, "azp"],
    [!(claims.exp > now - LEEWAY), "exp"],
    [!(claims.iat < now + LEEWAY), "iat"],
    [nonce !== undefined && claims.nonce !== nonce, "nonce"],
    [idClaims !== null && nonce === undefined && claims.sub !== idClaims.sub, "sub"],
  ].filter(([failed]) => failed);
  if (problems.length) {
    throw new Error(`The ID token is not valid: ${problems.map(([, name]) => name).join(", ")}`);
  }
  tokens = { ...response, expires_at: now + response.expires_in };
  idClaims = claims;
}

async function refresh() {
  try {
    const response = await getJSON(
      provider.token_endpoint,
      post({ grant_type: "refresh_token", refresh_token: tokens.refresh_token, client_id: config.client_id }),
    );
    accept(response); // the refresh token rotated: the one we sent is spent
    await showSignedIn(`Tokens refreshed at ${new Date().toLocaleTimeString()}.`);
  } catch (error) {
    forget(); // invalid_grant: the grant ended (signed out elsewhere, revoked)
    throw error;
  }
}

async function signOut() {
  const idToken = tokens.id_token;
  // Ostiary ends the session's refresh tokens at sign-out anyway; revoking ours first
  // does not depend on it.
  await fetch(provider.revocation_endpoint, post({
    token: tokens.refresh_token,
    token_type_hint: "refresh_token",
    client_id: config.client_id,
  }));
  forget();
  const state = randomString(16);
  sessionStorage.setItem(PENDING_SIGN_OUT, state);
  const params = new URLSearchParams({
    id_token_hint: idToken,
    post_logout_redirect_uri: config.post_logout_redirect_uri,
    state,
    client_id: config.client_id,
  });
  location.assign(`${provider.end_session_endpoint}?${params}`);
}

function forget() {
  tokens = null;
  idClaims = null;
}

async function showSignedIn(status) {
  const userinfo = await getJSON(provider.userinfo_endpoint, {
    headers: { Authorization: `Bearer ${tokens.access_token}` },
  });
  fillTable($("id-token"), idClaims);
  fillTable($("userinfo"), userinfo);
  $("access-token").textContent = `Access token expires at ${new Date(tokens.expires_at * 1000).toLocaleTimeString()}.`;
  show(`${status} Hello, ${userinfo.preferred_username || userinfo.sub}.`, true);
}

function fillTable(table, claims) {
  table.replaceChildren(
    ...Object.entries(claims).map(([name, value]) => {
      const row = document.createElement("tr");
      const key = document.createElement("th");
      const cell = document.createElement("td");
      key.textContent = name;
      cell.textContent = typeof value === "string" ? value : JSON.stringify(value);
      row.append(key, cell);
      return row;
    }),
  );
}

function show(status, signedIn) {
  $("status").textContent = status;
  $("signed-in").hidden = !signedIn;
  $("signed-out").hidden = signedIn;
}

function showError(error) {
  $("error").textContent = String(error.message || error);
  $("error").hidden = false;
  if (!tokens) show("Not signed in.", false);
}

function guarded(action) {
  return () => {
    $("error").hidden = true;
    action().catch(showError);
  };
}

async function start() {
  config = await getJSON("/config.json");
  provider = await getJSON(`${config.issuer}/.well-known/openid-configuration`);
  if (provider.issuer !== config.issuer) throw new Error("The discovery document names another issuer.");
  $("sign-in").addEventListener("click", guarded(signIn));
  $("refresh").addEventListener("click", guarded(refresh));
  $("sign-out").addEventListener("click", guarded(signOut));
  const params = new URLSearchParams(location.search);
  if (location.pathname === "/callback") {
    await finishSignIn(params);
    return;
  }
  const signOutState = sessionStorage.getItem(PENDING_SIGN_OUT);
  if (params.has("state") && signOutState !== null) {
    sessionStorage.removeItem(PENDING_SIGN_OUT);
    history.replaceState(null, "", "/");
    if (params.get("state") !== signOutState) throw new Error("This answer does not belong to a sign-out started here.");
    show("You are signed out.", false);
    return;
  }
  show("Not signed in.", false);
}

start().catch(showError);
