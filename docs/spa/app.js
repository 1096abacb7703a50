// The example single-page app of oauth2gate (Caddyfile.example serves it on http://localhost:8081).
// It reads /config.json (issuer, client_id, scope, api), finds the endpoints in the issuer's
// discovery document, and signs in with the authorization code flow and PKCE S256 (RFC 7636,
// RFC 9700 §2.1.1): the code comes back to this page and is exchanged with fetch(); no secret, as
// a public client has none. A token in the fragment (the implicit grant of the seed notes) is
// taken too, when its state is one this page sent. Tokens live in this page's memory; the refresh token and the PKCE verifier in
// sessionStorage, so that a reload keeps the session (a trade-off for a demo: any script on this
// origin can read sessionStorage). window.spa is the app for tests/spa_test.go.
'use strict';

const $ = (id) => document.getElementById(id);
const app = { config: null, meta: null, access: null, refresh: null, scope: '', answer: null, events: [] };
window.spa = app;

function log(msg, err) {
  app.events.push((err ? 'ERROR ' : '') + msg);
  const li = document.createElement('li');
  li.textContent = msg;
  if (err) li.className = 'err';
  $('log').append(li);
}

function b64url(bytes) {
  let s = '';
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
const random = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));
const short = (t) => (t ? `${t.length} characters, in this page's memory` : '–');

function show() {
  $('who').textContent = app.subject ? app.subject : app.access ? 'yes' : 'no';
  $('scope').textContent = app.scope || '–';
  $('access').textContent = short(app.access);
  $('call').disabled = !app.access;
  $('refresh').disabled = !app.refresh;
  $('signout').disabled = !app.access && !app.refresh;
  $('answer').textContent = app.answer ? JSON.stringify(app.answer, null, 2) : '–';
}

// post sends a form to an endpoint of the server (token, revocation): a CORS "simple" request, so
// no preflight; the answer is readable because the server allows this origin.
async function post(url, fields) {
  const r = await fetch(url, { method: 'POST', body: new URLSearchParams(fields) });
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = { raw: text }; }
  return { status: r.status, body, wwwAuthenticate: r.headers.get('WWW-Authenticate') };
}

function keepTokens(t) {
  app.access = t.access_token;
  app.scope = t.scope || app.scope;
  if (t.refresh_token) {
    app.refresh = t.refresh_token;
    sessionStorage.setItem('spa.refresh', t.refresh_token);
  }
}

// signIn sends the browser to the authorization endpoint: the code flow with a PKCE S256
// challenge, or (implicit, for the seed notes' browser-only client) a token in the fragment.
// Either way a fresh state ties the answer to this request.
app.signIn = async (implicit = false, clientID = app.config.client_id) => {
  const state = random(16);
  const p = { client_id: clientID, redirect_uri: app.redirectURI, scope: app.config.scope, state };
  const saved = { state, implicit, client_id: clientID };
  if (implicit) {
    p.response_type = 'token';
  } else {
    saved.verifier = random(32);
    p.response_type = 'code';
    p.code_challenge = b64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(saved.verifier)));
    p.code_challenge_method = 'S256';
  }
  sessionStorage.setItem('spa.pkce', JSON.stringify(saved));
  const u = new URL(app.meta.authorization_endpoint);
  u.search = new URLSearchParams(p);
  log(implicit ? 'to the authorization server (implicit grant)' : 'to the authorization server, with a PKCE S256 challenge');
  location.assign(u.toString());
};

// takeSaved returns the saved request when state matches it; it is used once.
function takeSaved(state, implicit) {
  const saved = JSON.parse(sessionStorage.getItem('spa.pkce') || 'null');
  sessionStorage.removeItem('spa.pkce');
  history.replaceState(null, '', app.redirectURI); // the code or token leaves the address bar and history
  if (!saved || !state || state !== saved.state || saved.implicit !== implicit) {
    log('the state does not match a sign-in this page started: ignored', true);
    return null;
  }
  return saved;
}

// exchange redeems the code this page came back with.
async function exchange(params) {
  const saved = takeSaved(params.get('state'), false);
  if (!saved) return;
  if (params.get('iss') && params.get('iss') !== app.config.issuer) {
    log(`the code comes from ${params.get('iss')}, not ${app.config.issuer} (RFC 9207)`, true);
    return;
  }
  const r = await post(app.meta.token_endpoint, {
    grant_type: 'authorization_code', code: params.get('code'), redirect_uri: app.redirectURI,
    client_id: saved.client_id, code_verifier: saved.verifier,
  });
  app.exchange = r;
  if (r.status !== 200) {
    log(`code exchange refused: ${r.status} ${r.body && r.body.error}`, true);
    return;
  }
  keepTokens(r.body);
  log(`code exchanged with fetch(): ${r.body.token_type} token, scope "${r.body.scope}"`);
  await app.callApi();
}

// callApi calls the guarded API with the access token in the Authorization header, which makes
// the browser send a preflight first; the guard answers it for this origin.
app.callApi = async (token = app.access, path = '/orders') => {
  const r = await fetch(app.config.api + path, { headers: { Authorization: `Bearer ${token}` } });
  const text = await r.text();
  let body;
  try { body = JSON.parse(text); } catch { body = { raw: text }; }
  const out = { status: r.status, body, wwwAuthenticate: r.headers.get('WWW-Authenticate') };
  if (token === app.access) {
    app.answer = { status: r.status, ...body };
    if (r.status === 200 && body.subject) app.subject = body.subject;
  }
  log(r.status === 200 ? `GET ${path}: 200, the API sees subject "${body.subject}"` : `GET ${path}: ${r.status} ${out.wwwAuthenticate || ''}`, r.status !== 200);
  show();
  return out;
};

// refresh uses the refresh token; a public client's is rotated on every use.
app.refresh = null;
app.refreshTokens = async (token = app.refresh) => {
  const r = await post(app.meta.token_endpoint, { grant_type: 'refresh_token', refresh_token: token, client_id: app.clientID });
  if (r.status === 200) {
    keepTokens(r.body);
    log(`refreshed: a new access token${r.body.refresh_token && r.body.refresh_token !== token ? ' and a new refresh token (rotated)' : ''}`);
  } else {
    log(`refresh refused: ${r.status} ${r.body && r.body.error}`, true);
  }
  show();
  return r;
};

app.signOut = async () => {
  const r = app.refresh ? await post(app.meta.revocation_endpoint, { token: app.refresh, token_type_hint: 'refresh_token', client_id: app.clientID }) : null;
  log(r ? `refresh token revoked: ${r.status}` : 'signed out');
  Object.assign(app, { access: null, refresh: null, scope: '', subject: null, answer: null });
  sessionStorage.removeItem('spa.refresh');
  show();
  return r;
};

async function start() {
  app.redirectURI = location.origin + location.pathname;
  app.config = await (await fetch('config.json')).json();
  app.clientID = app.config.client_id; // the client the current tokens belong to
  $('origin').textContent = location.origin;
  $('issuer').textContent = app.config.issuer;
  $('api').textContent = app.config.api;
  // The discovery document answers any origin.
  app.meta = await (await fetch(app.config.issuer + '/.well-known/openid-configuration')).json();
  log(`discovery: token endpoint ${app.meta.token_endpoint}`);
  app.refresh = sessionStorage.getItem('spa.refresh');
  $('signin').addEventListener('click', () => app.signIn());
  $('call').addEventListener('click', () => app.callApi());
  $('refresh').addEventListener('click', () => app.refreshTokens());
  $('signout').addEventListener('click', () => app.signOut());
  const q = new URLSearchParams(location.search);
  const frag = new URLSearchParams(location.hash.slice(1));
  if (q.get('error')) {
    log(`the authorization server said ${q.get('error')}: ${q.get('error_description') || ''}`, true);
    history.replaceState(null, '', app.redirectURI);
  } else if (q.get('code')) {
    await exchange(q);
  } else if (frag.get('access_token')) {
    // The implicit grant: the token arrives in the fragment, which never reaches a server. A
    // token this page did not ask for (another site's link with its own token) is not taken.
    const saved = takeSaved(frag.get('state'), true);
    if (!saved) {
      show();
      return;
    }
    app.clientID = saved.client_id;
    app.refresh = null; // no refresh token with the implicit grant (RFC 6749 §4.2.2)
    sessionStorage.removeItem('spa.refresh');
    keepTokens({ access_token: frag.get('access_token'), scope: frag.get('scope') });
    log(`token taken from the fragment (implicit grant), scope "${frag.get('scope')}"`);
    await app.callApi();
  }
  show();
}

app.ready = start().catch((e) => { log(`${e.name}: ${e.message}`, true); throw e; });
app.ready.catch(() => {});
