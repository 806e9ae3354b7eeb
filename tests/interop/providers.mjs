// Evaluate flags through the official OpenFeature OFREP providers for JavaScript.
//
// node providers.mjs <job.json>   job: {url, token, cases: [{key, type, default, context}]}
// Runs every case through the Node server provider (@openfeature/ofrep-provider with
// @openfeature/server-sdk) and the web provider (@openfeature/ofrep-web-provider with
// @openfeature/web-sdk, which runs in Node: it needs only fetch) and prints
// {server: [details...], web: [details...]}, each {key, value, variant, reason, errorCode,
// errorMessage}.
import { readFileSync } from 'node:fs';
import { OpenFeature as ServerFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';
import { OpenFeature as WebFeature } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const headers = [['Authorization', `Bearer ${job.token}`]];
const METHODS = {
  boolean: 'getBooleanDetails',
  string: 'getStringDetails',
  number: 'getNumberDetails',
  object: 'getObjectDetails',
};
const quiet = { error() {}, warn() {}, info() {}, debug() {} };
const pick = (details) => ({
  key: details.flagKey,
  value: details.value,
  variant: details.variant ?? null,
  reason: details.reason ?? null,
  errorCode: details.errorCode ?? null,
  errorMessage: details.errorMessage ?? null,
});

async function server() {
  await ServerFeature.setProviderAndWait(new OFREPProvider({ baseUrl: job.url, headers }));
  ServerFeature.setLogger(quiet);
  const client = ServerFeature.getClient();
  const out = [];
  for (const c of job.cases) {
    out.push(pick(await client[METHODS[c.type]](c.key, c.default, c.context)));
  }
  await ServerFeature.close();
  return out;
}

async function web() {
  // no persistent cache (there is no localStorage in Node) and no background refresh: each
  // context is fetched once in bulk when it is set
  const provider = new OFREPWebProvider(
    { baseUrl: job.url, headers, cacheMode: 'disabled', changeDetection: 'none' },
    quiet,
  );
  WebFeature.setLogger(quiet);
  const out = [];
  let current = null;
  for (const c of job.cases) {
    const context = JSON.stringify(c.context);
    if (current === null) {
      await WebFeature.setContext(c.context);
      await WebFeature.setProviderAndWait(provider);
    } else if (context !== current) {
      await WebFeature.setContext(c.context);
    }
    current = context;
    out.push(pick(WebFeature.getClient()[METHODS[c.type]](c.key, c.default)));
  }
  await WebFeature.close();
  return out;
}

const timer = setTimeout(() => {
  console.error('providers.mjs: still running after 60 s');
  process.exit(2);
}, 60000);
const result = { server: await server(), web: await web() };
clearTimeout(timer);
console.log(JSON.stringify(result));
