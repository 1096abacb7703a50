// check.mjs runs panva's openid-client, the strictest common OIDC client library, against a live
// oauth2gate. tests/openidclient_test.go starts Caddy, runs
//
//	node check.mjs <issuer> <client_id> <client_secret> <redirect_uri>
//
// and talks to this script over stdio:
//
//	script → test  AUTHZ <authorization URL>          (the test walks login and consent with its browser)
//	test → script  <callback URL with code, state, iss>
//	script → test  STEP <name>                        (progress, one line per step)
//	script → test  RESULT <one JSON object>           (every step's outcome), exit 0
//	script → test  ERROR <one JSON object>            (the step that failed and why), exit 1
//
// Nothing is worked around: whatever openid-client rejects is reported as it is.
import * as client from 'openid-client';

const [issuerArg, clientId, clientSecret, redirectUri] = process.argv.slice(2);
if (!issuerArg || !clientId || !clientSecret || !redirectUri) {
  console.error('usage: node check.mjs <issuer> <client_id> <client_secret> <redirect_uri>');
  process.exit(2);
}

let step = 'start';
const out = {};

function describe(err) {
  const d = { step, name: err?.name, message: err?.message, code: err?.code };
  for (const k of ['error', 'error_description', 'status']) {
    if (err?.[k] !== undefined) d[k] = err[k];
  }
  if (err?.cause !== undefined) {
    try {
      d.cause = JSON.parse(JSON.stringify(err.cause));
    } catch {
      d.cause = String(err.cause);
    }
    if (d.cause && typeof d.cause === 'object' && Object.keys(d.cause).length === 0) d.cause = String(err.cause);
  }
  return d;
}

function begin(name) {
  step = name;
  console.log('STEP ' + name);
}

// The test writes exactly one line, the callback URL, to stdin and closes it.
async function readLine() {
  let data = '';
  process.stdin.setEncoding('utf8');
  for await (const chunk of process.stdin) {
    data += chunk;
    if (data.includes('\n')) break;
  }
  const line = data.split('\n')[0].trim();
  if (!line) throw new Error('stdin closed before the callback URL arrived');
  return line;
}

try {
  const issuer = new URL(issuerArg);
  const insecure = { execute: [client.allowInsecureRequests] }; // the test's issuer is http://127.0.0.1

  begin('discovery');
  const config = await client.discovery(issuer, clientId, clientSecret, client.ClientSecretBasic(clientSecret), insecure);
  const md = config.serverMetadata();
  out.discovery = {
    issuer: md.issuer,
    authorization_endpoint: md.authorization_endpoint,
    token_endpoint: md.token_endpoint,
    userinfo_endpoint: md.userinfo_endpoint,
    jwks_uri: md.jwks_uri,
    introspection_endpoint: md.introspection_endpoint,
    revocation_endpoint: md.revocation_endpoint,
    supportsPKCE: config.serverMetadata().supportsPKCE(),
    iss_parameter: md.authorization_response_iss_parameter_supported,
  };

  // RFC 8414 discovery (/.well-known/oauth-authorization-server), and client_secret_post.
  begin('discovery_oauth2');
  const configPost = await client.discovery(issuer, clientId, clientSecret, client.ClientSecretPost(clientSecret), {
    ...insecure,
    algorithm: 'oauth2',
  });
  out.discovery_oauth2 = { issuer: configPost.serverMetadata().issuer };

  begin('authorization_url');
  const codeVerifier = client.randomPKCECodeVerifier();
  const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authURL = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid email profile',
    code_challenge: codeChallenge,
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  console.log('AUTHZ ' + authURL.href);

  begin('callback');
  const callback = new URL(await readLine());
  out.callback = { has_iss: callback.searchParams.has('iss'), has_state: callback.searchParams.has('state') };

  // Checks iss (RFC 9207), state, PKCE, and the id_token: signature, iss, aud, exp, iat, nonce, at_hash.
  begin('authorization_code_grant');
  const tokens = await client.authorizationCodeGrant(config, callback, {
    pkceCodeVerifier: codeVerifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  out.code = {
    access_token: tokens.access_token,
    refresh_token: tokens.refresh_token,
    token_type: tokens.token_type,
    expires_in: tokens.expires_in,
    scope: tokens.scope,
    has_id_token: typeof tokens.id_token === 'string',
    claims,
  };

  begin('userinfo');
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  out.userinfo = userinfo;

  begin('refresh_token_grant');
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  const rclaims = refreshed.claims();
  out.refresh = {
    access_token: refreshed.access_token,
    refresh_token: refreshed.refresh_token,
    token_type: refreshed.token_type,
    expires_in: refreshed.expires_in,
    scope: refreshed.scope,
    has_id_token: typeof refreshed.id_token === 'string',
    claims: rclaims,
  };

  begin('userinfo_after_refresh');
  out.userinfo_after_refresh = await client.fetchUserInfo(config, refreshed.access_token, claims.sub);

  begin('introspect_access');
  out.introspect_access = await client.tokenIntrospection(config, refreshed.access_token);

  begin('introspect_refresh');
  out.introspect_refresh = await client.tokenIntrospection(configPost, refreshed.refresh_token, {
    token_type_hint: 'refresh_token',
  });

  begin('introspect_rotated_out');
  out.introspect_rotated_out = await client.tokenIntrospection(config, tokens.access_token);

  begin('revoke_access');
  await client.tokenRevocation(config, refreshed.access_token, { token_type_hint: 'access_token' });
  out.revoke_access = true;

  begin('introspect_after_revoke');
  out.introspect_after_revoke = await client.tokenIntrospection(config, refreshed.access_token);

  begin('userinfo_after_revoke');
  try {
    await client.fetchUserInfo(config, refreshed.access_token, claims.sub);
    out.userinfo_after_revoke = { ok: true };
  } catch (err) {
    out.userinfo_after_revoke = { ok: false, ...describe(err) };
  }

  begin('revoke_refresh');
  await client.tokenRevocation(configPost, refreshed.refresh_token, { token_type_hint: 'refresh_token' });
  out.revoke_refresh = true;

  begin('introspect_refresh_after_revoke');
  out.introspect_refresh_after_revoke = await client.tokenIntrospection(config, refreshed.refresh_token, {
    token_type_hint: 'refresh_token',
  });

  begin('refresh_after_revoke');
  try {
    await client.refreshTokenGrant(config, refreshed.refresh_token);
    out.refresh_after_revoke = { ok: true };
  } catch (err) {
    out.refresh_after_revoke = { ok: false, ...describe(err) };
  }

  begin('revoke_unknown');
  await client.tokenRevocation(config, 'not-a-token-' + client.randomState());
  out.revoke_unknown = true;

  step = 'done';
  console.log('RESULT ' + JSON.stringify(out));
  process.exit(0);
} catch (err) {
  console.log('ERROR ' + JSON.stringify(describe(err)));
  process.exit(1);
}
