// An OpenID Connect provider for flowbot's tests: panva's oidc-provider (OpenID Certified), with its
// development login pages, PKCE (S256) required of every client, and the accounts and clients of a
// JSON file: node provider.mjs PORT CONFIG.json. Every login and token exchange is logged, one JSON line each.

import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const [port, configFile] = process.argv.slice(2);
const config = JSON.parse(readFileSync(configFile, "utf8"));
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: config.clients,
  pkce: { methods: ["S256"], required: () => true },
  scopes: ["openid", "email", "profile", "groups"],
  claims: { email: ["email", "email_verified"], profile: ["name", "preferred_username"], groups: ["groups"] },
  async findAccount(ctx, id) {
    const account = config.accounts[id] || {};
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: `${id}@example.org`,
          email_verified: account.email_verified ?? true,
          preferred_username: id,
          name: id,
          groups: account.groups || [],
        };
      },
    };
  },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ["flowbot-test-provider"] },
});

const say = (event, fields) => console.log(JSON.stringify({ event, ...fields }));
provider.on("grant.success", (ctx) => say("grant.success", { client: ctx.oidc.client?.clientId }));
provider.on("grant.error", (ctx, error) => say("grant.error", { error: error.error, description: error.error_description }));
provider.on("authorization.error", (ctx, error) => say("authorization.error", { error: error.error, description: error.error_description }));
provider.on("server_error", (ctx, error) => say("server_error", { error: String(error) }));

provider.listen(Number(port), "127.0.0.1", () => say("ready", { issuer }));
