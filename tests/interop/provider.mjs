// Test-only OAuth 2.0 authorization server for tower-oauth interop tests,
// built on the certified `oidc-provider` (pinned in package.json).
//
//   PORT=0 TOKEN_TTL=5 node provider.mjs
//
// Prints exactly one line on stdout once it accepts connections:
//   LISTENING http://127.0.0.1:<port>
// Everything else (oidc-provider warnings/notices) goes to stderr.
// Runs until SIGTERM/SIGINT, then closes the listener and exits 0.

import {
  X509Certificate, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';

// oidc-provider prints its NOTICEs with console.info (stdout); keep stdout
// reserved for the LISTENING line so harnesses can parse it blindly.
console.info = (...args) => console.error(...args);

const { default: Provider, errors } = await import('oidc-provider');

const HOST = '127.0.0.1';
const intEnv = (name, fallback, min, max) => {
  const raw = process.env[name] || String(fallback);
  const value = Number(raw);
  if (!/^[0-9]+$/.test(raw) || value < min || value > max) {
    throw new Error(`invalid ${name}: ${raw}`);
  }
  return value;
};
const PORT = intEnv('PORT', 0, 0, 65535);
const TOKEN_TTL = intEnv('TOKEN_TTL', 5, 1, 86400);

// Resource servers known to the AS (RFC 8707). Any other `resource` value is
// rejected with invalid_target.
const RESOURCE_SERVERS = {
  'https://api.example.test': {
    scope: 'api.read api.write',
    accessTokenFormat: 'opaque',
  },
  'https://billing.example.test': {
    scope: 'api.read api.write',
    accessTokenFormat: 'opaque',
  },
};

// RFC 8693 token exchange, registered below with provider.registerGrantType.
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

// The protected API's own client; it may introspect any client's tokens.
const INTROSPECTOR = 'api';

const ccClient = (client_id, client_secret, token_endpoint_auth_method) => ({
  client_id,
  client_secret,
  token_endpoint_auth_method,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: 'api.read api.write',
});

// The throw-away keys of tests/keys: the public halves are the clients' registered
// `jwks` (RFC 7591 section 2); the Rust tests sign with the private ones.
const keyFile = (name) => readFileSync(new URL(`../keys/${name}`, import.meta.url));
const publicJwk = (name, alg) => ({
  ...createPublicKey(createPrivateKey(keyFile(name))).export({ format: 'jwk' }),
  alg,
  use: 'sig',
});
const keyClient = (client_id, jwk) => ({
  ...ccClient(client_id, undefined, 'private_key_jwt'),
  jwks: { keys: [jwk] },
});

const clients = [
  ccClient('basic-client', 'basic-secret-1', 'client_secret_basic'),
  ccClient('post-client', 'post-secret-2', 'client_secret_post'),
  // RFC 6749 2.3.1: id and secret must be application/x-www-form-urlencoded
  // before base64 for HTTP Basic. oidc-provider decodes them that way.
  ccClient('weird:client id', 's%cr:t +/=', 'client_secret_basic'),
  { ...ccClient(INTROSPECTOR, 'api-secret', 'client_secret_basic'), scope: undefined },
  // RFC 7523 section 2.2 client assertions, one client per algorithm.
  keyClient('pkjwt-rs256', publicJwk('rsa.pem', 'RS256')),
  keyClient('pkjwt-es256', publicJwk('p256.pem', 'ES256')),
  keyClient('pkjwt-eddsa', publicJwk('ed25519.pem', 'EdDSA')),
  // An assertion file written by "the platform" (the test), signed with the P-384 key.
  keyClient('assertion-file-client', publicJwk('p384.pem', 'ES384')),
  // HS256 with the secret: oidc-provider wants at least 32 bytes for it.
  ccClient('secret-jwt-client', 'a-client-secret-of-more-than-32-bytes', 'client_secret_jwt'),
  // A gateway that exchanges its callers' tokens (RFC 8693) for its own.
  {
    ...ccClient('gateway', 'gateway-secret', 'client_secret_basic'),
    grant_types: ['client_credentials', TOKEN_EXCHANGE],
  },
  // RFC 8705 section 2.1: a certificate of the test CA with this DNS name.
  {
    ...ccClient('mtls-client', undefined, 'tls_client_auth'),
    tls_client_auth_san_dns: 'mtls-client.test',
  },
];

// Throw-away signing key (only needed for discovery/jwks; all access tokens
// are opaque). Avoids the "quick start development-only signing keys" warning.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'interop-rs256', alg: 'RS256', use: 'sig' };

const server = createServer();
// Node's default idle keep-alive timeout is 5 s, the same as the default
// TOKEN_TTL: a client refreshing after ~5 s idle would race the server closing
// its pooled connection. Keep idle connections much longer than any TTL here.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(PORT, HOST, resolve);
});
const issuer = `http://${HOST}:${server.address().port}`;

// The mutual-TLS listener (RFC 8705): the test CA's server certificate for 127.0.0.1; a
// client certificate is requested, and verified against the test CA by
// `certificateAuthorized` rather than by the TLS stack, so that an untrusted one gets an
// `invalid_client` answer, not a dropped connection.
const mtlsServer = createHttpsServer({
  key: keyFile('mtls/server.key'),
  cert: keyFile('mtls/server.pem'),
  ca: keyFile('mtls/ca.pem'),
  requestCert: true,
  rejectUnauthorized: false,
});
mtlsServer.keepAliveTimeout = 120_000;
mtlsServer.headersTimeout = 125_000;
await new Promise((resolve, reject) => {
  mtlsServer.once('error', reject);
  mtlsServer.listen(0, HOST, resolve);
});
const mtlsOrigin = `https://${HOST}:${mtlsServer.address().port}`;

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [jwk] },
  scopes: ['openid', 'offline_access', 'api.read', 'api.write'],
  clientAuthMethods: [
    'client_secret_basic',
    'client_secret_post',
    'client_secret_jwt',
    'private_key_jwt',
    'tls_client_auth',
  ],
  extraTokenClaims: async (ctx, token) => (
    token.exchangedFor ? { subject: token.exchangedFor } : undefined
  ),
  enabledJWA: {
    // oidc-provider's defaults, and ES384 (the assertion-file client's).
    clientAuthSigningAlgValues: ['HS256', 'RS256', 'PS256', 'ES256', 'ES384', 'Ed25519', 'EdDSA'],
  },
  discovery: {
    // RFC 8705 section 5: mutual-TLS clients send token requests to the https listener.
    mtls_endpoint_aliases: { token_endpoint: `${mtlsOrigin}/token` },
  },
  ttl: {
    ClientCredentials: TOKEN_TTL,
  },
  features: {
    devInteractions: { enabled: false },
    // RFC 9449: DPoP-bound tokens for clients that send a proof, with a server nonce
    // required (a `use_dpop_nonce` answer first); other clients get bearer tokens.
    dPoP: {
      enabled: true,
      nonceSecret: randomBytes(32),
      requireNonce: () => true,
    },
    mTLS: {
      enabled: true,
      tlsClientAuth: true,
      // The https listener asks for a certificate and lets the provider decide.
      getCertificate: (ctx) => {
        const peer = ctx.req.socket.getPeerCertificate?.();
        return peer?.raw ? new X509Certificate(peer.raw) : undefined;
      },
      certificateAuthorized: (ctx) => ctx.req.socket.authorized === true,
      certificateSubjectMatches: (ctx, property, expected) => {
        const peer = ctx.req.socket.getPeerCertificate?.();
        if (property !== 'tls_client_auth_san_dns' || !peer?.subjectaltname) return false;
        return peer.subjectaltname.split(', ').includes(`DNS:${expected}`);
      },
    },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // The protected API may introspect everything; other clients only
      // their own tokens (others' tokens report {"active":false}).
      allowedPolicy: async (ctx, client, token) => (
        client.clientId === INTROSPECTOR || client.clientId === token.clientId
      ),
    },
    revocation: {
      enabled: true,
      // Only the client the token was issued to may revoke it.
      allowedPolicy: async (ctx, client, token) => {
        if (client.clientId !== token.clientId) {
          throw new errors.InvalidRequest('client is not authorized to revoke the presented token');
        }
        return true;
      },
    },
    resourceIndicators: {
      enabled: true,
      // No resource parameter => no resource server => plain opaque token
      // without `aud`.
      defaultResource: async () => undefined,
      getResourceServerInfo: async (ctx, resourceIndicator) => {
        const info = RESOURCE_SERVERS[resourceIndicator];
        if (!info) throw new errors.InvalidTarget();
        return { ...info };
      },
      useGrantedResource: async () => false,
    },
  },
});

// Token exchange (RFC 8693 section 2): the subject token must be an active access token of
// this provider (a client-credentials token of any client); the new token is the
// requesting client's, with `subject` (the subject token's client) in its introspection.
// An unknown or expired subject token is `invalid_grant` (section 2.2.2).
provider.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
  const { params } = ctx.oidc;
  if (!params.subject_token) throw new errors.InvalidRequest('subject_token is required');
  if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest('subject_token_type must be an access token');
  }
  const subject = await provider.ClientCredentials.find(params.subject_token);
  if (!subject || subject.isExpired) throw new errors.InvalidGrant('subject token is not active');
  const token = new provider.ClientCredentials({
    client: ctx.oidc.client,
    scope: params.scope || undefined,
  });
  // Read by extraTokenClaims when the token is saved (opaque tokens take their `extra`
  // from it), then shown by introspection.
  token.exchangedFor = subject.clientId;
  ctx.oidc.entity('ClientCredentials', token);
  const value = await token.save();
  ctx.body = {
    access_token: value,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: token.expiration,
    ...(token.scope ? { scope: token.scope } : {}),
  };
}, ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'audience', 'scope']);

// What the token endpoint did, for the Rust tests to assert on (GET /_interop/stats):
// tokens issued per client (counted when oidc-provider saves one), and each POST /token
// with the client authentication it used, the client it authenticated and its status.
const stats = { issued: {}, revoked: 0, token_requests: [] };
provider.on('client_credentials.saved', (token) => {
  stats.issued[token.clientId] = (stats.issued[token.clientId] || 0) + 1;
});
provider.on('client_credentials.destroyed', () => { stats.revoked += 1; });
provider.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || ctx.path !== '/token') return next();
  const header = ctx.get('authorization');
  try {
    await next();
  } finally {
    const body = ctx.oidc?.body ?? {};
    let auth = 'none';
    if (/^basic /i.test(header)) auth = 'basic';
    else if (body.client_secret !== undefined) auth = 'post';
    else if (body.client_assertion !== undefined) auth = 'assertion';
    else if (ctx.req.socket.getPeerCertificate?.()?.raw) auth = 'mtls';
    stats.token_requests.push({
      auth,
      client_id: ctx.oidc?.client?.clientId ?? null,
      status: ctx.status,
      error: ctx.body?.error ?? null,
    });
  }
});

const callback = provider.callback();
mtlsServer.on('request', callback);
server.on('request', (req, res) => {
  if (req.method === 'GET' && req.url === '/_interop/stats') {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(stats));
    return;
  }
  callback(req, res);
});

let closing = false;
const shutdown = (signal) => {
  if (closing) return;
  closing = true;
  console.error(`received ${signal}, shutting down`);
  mtlsServer.close();
  mtlsServer.closeAllConnections?.();
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

process.stdout.write(`LISTENING ${issuer}\n`);
