// The OFREP web provider's event streams (ADR-0008) under Node.
//
// node streams.mjs <job.json>   job: {url, token, flag}
// @openfeature/ofrep-web-provider connects to the `eventStreams` of its bulk answer with the
// global EventSource (changeDetection 'sse', its default). Node 20 has none: the `eventsource`
// package stands in, as is. Like a browser's, it sends no headers: the stream URL's ticket,
// which Stageflow's bulk answer carries, is the credential.
// Prints one JSON line once the stream is open ({ready, value}), then, after the flag changes
// on the server, a second one ({value, flagsChanged, refetches: the bulk URLs asked since}).
import { readFileSync } from 'node:fs';
import { EventSource as Polyfill } from 'eventsource';
import { OpenFeature, ProviderEvents } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const auth = `Bearer ${job.token}`;
const quiet = { error() {}, warn() {}, info() {}, debug() {} };
const streams = [];
let opened = false;
let ready = false;
let value = null;

function announce() {
  if (opened && value !== null && !ready) {
    ready = true;
    console.log(JSON.stringify({ ready: true, value, streams }));
  }
}

globalThis.EventSource = class extends Polyfill {
  constructor(url, init) {
    super(url, init);
    streams.push(String(url));
    this.addEventListener('error', (event) =>
      console.error(`stream error: ${event.code ?? ''} ${event.message ?? ''}`),
    );
    this.addEventListener('open', () => {
      opened = true;
      announce();
    });
  }
};

// every bulk request the provider makes, to show the refetch carries the notice's etag
const asked = [];
const plainFetch = globalThis.fetch;
globalThis.fetch = (input, init) => {
  asked.push(String(input instanceof Request ? input.url : input));
  return plainFetch(input, init);
};

const timer = setTimeout(() => {
  const state = JSON.stringify({ streams, opened, value, asked });
  console.error(`streams.mjs: no change after 30 s: ${state}`);
  process.exit(2);
}, 30000);

const provider = new OFREPWebProvider(
  { baseUrl: job.url, headers: [['Authorization', auth]], cacheMode: 'disabled' },
  quiet,
);
OpenFeature.setLogger(quiet);
await OpenFeature.setContext({ targetingKey: 'user-1' });
await OpenFeature.setProviderAndWait(provider);
const client = OpenFeature.getClient();
const before = asked.length;
const changed = new Promise((resolve) =>
  OpenFeature.addHandler(ProviderEvents.ConfigurationChanged, resolve),
);
value = client.getBooleanValue(job.flag, false);
announce();
const details = await changed;
clearTimeout(timer);
console.log(
  JSON.stringify({
    value: client.getBooleanValue(job.flag, false),
    flagsChanged: details.flagsChanged ?? null,
    refetches: asked.slice(before),
  }),
);
await OpenFeature.close();
process.exit(0);
