// What the test reads back (window.seen): the stream URLs the provider opened and when they
// opened, the bulk requests it made, and each value new_ui had after a configuration change.
// Only watched: the EventSource is the browser's own, the provider's options its documented ones.
import { OpenFeature, ProviderEvents } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

const asked = new URLSearchParams(location.search);
const seen = { streams: [], opened: 0, errors: 0, bulk: [], values: [], ready: false };
window.seen = seen;

const Native = window.EventSource;
window.EventSource = class extends Native {
  constructor(url, init) {
    super(url, init);
    seen.streams.push(String(url));
    this.addEventListener('open', () => { seen.opened += 1; });
    this.addEventListener('error', () => { seen.errors += 1; });
  }
};
const plainFetch = window.fetch.bind(window);
window.fetch = (input, init) => {
  seen.bulk.push(String(input instanceof Request ? input.url : input));
  return plainFetch(input, init);
};

const provider = new OFREPWebProvider({
  baseUrl: asked.get('api'),
  headers: [['Authorization', `Bearer ${asked.get('token')}`]],
});
await OpenFeature.setContext({ targetingKey: 'user-1' });
await OpenFeature.setProviderAndWait(provider);
const client = OpenFeature.getClient();
const show = () => {
  const details = client.getBooleanDetails('new_ui', false);
  document.getElementById('new_ui').textContent = String(details.value);
  return details.errorCode ? `error: ${details.errorCode}` : details.value;
};
seen.values.push(show());
OpenFeature.addHandler(ProviderEvents.ConfigurationChanged, () => seen.values.push(show()));
seen.ready = true;
