// Compare Stageflow's OFREP answers with @openfeature/flagd-core evaluating the committed file.
//
// node parity.mjs <job.json>   job: {url, token, document, contexts, singleEvery}
// For every context it asks Stageflow's bulk endpoint (and, for every `singleEvery`-th context,
// each flag's single endpoint) and resolves every flag with flagd-core, typed by its variants.
// Prints one JSON object: {contexts, evaluations, mismatches, reasonMismatches, samples, seen}.
import { readFileSync } from 'node:fs';
import { FlagdCore } from '@openfeature/flagd-core';

const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const core = new FlagdCore();
core.setConfigurations(job.document);
const flags = JSON.parse(job.document).flags;

// The code default each typed resolution gets; an answer without a value must come back as it.
const DEFAULTS = { boolean: false, string: '<code default>', number: -12345, object: { code: 'default' } };
const typeOf = (key) => {
  const kinds = new Set(Object.values(flags[key].variants).map((v) => typeof v));
  return kinds.size === 1 ? [...kinds][0] : 'object';
};

async function post(path, context) {
  const response = await fetch(`${job.url}${path}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${job.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ context }),
    signal: AbortSignal.timeout(20000),
  });
  return { status: response.status, body: await response.json() };
}

function expected(key, context) {
  const type = typeOf(key);
  const got = core.resolve(type, key, DEFAULTS[type], context);
  if (got.errorCode) return { errorCode: got.errorCode };
  const codeDefault = got.variant === undefined && got.value === DEFAULTS[type];
  return codeDefault
    ? { codeDefault: true, reason: got.reason }
    : { value: got.value, variant: got.variant, reason: got.reason };
}

function fromStageflow(answer) {
  if (answer.errorCode) return { errorCode: answer.errorCode };
  if (!('value' in answer)) return { codeDefault: true, reason: answer.reason };
  return { value: answer.value, variant: answer.variant, reason: answer.reason };
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const result = { contexts: 0, evaluations: 0, mismatches: 0, reasonMismatches: 0, samples: [], seen: {} };

function compare(key, context, answer, via) {
  const want = expected(key, context);
  const got = fromStageflow(answer);
  result.evaluations += 1;
  const seen = (result.seen[key] ??= {});
  const label = want.codeDefault ? '(code default)' : want.errorCode ?? String(want.variant);
  seen[label] = (seen[label] ?? 0) + 1;
  const { reason: wantReason, ...wantRest } = want;
  const { reason: gotReason, ...gotRest } = got;
  if (!same(wantRest, gotRest)) {
    result.mismatches += 1;
    if (result.samples.length < 20) result.samples.push({ via, key, context, want, got });
  } else if (wantReason !== gotReason) {
    result.reasonMismatches += 1;
    if (result.samples.length < 20) result.samples.push({ via, key, context, want, got });
  }
}

for (const [index, context] of job.contexts.entries()) {
  const bulk = await post('/ofrep/v1/evaluate/flags', context);
  if (bulk.status !== 200) throw new Error(`bulk answered ${bulk.status}: ${JSON.stringify(bulk.body)}`);
  const answers = new Map(bulk.body.flags.map((answer) => [answer.key, answer]));
  for (const key of Object.keys(flags)) {
    compare(key, context, answers.get(key) ?? { errorCode: 'MISSING_FROM_BULK' }, 'bulk');
  }
  if (job.singleEvery && index % job.singleEvery === 0) {
    for (const key of Object.keys(flags)) {
      const single = await post(`/ofrep/v1/evaluate/flags/${encodeURIComponent(key)}`, context);
      compare(key, context, single.body, 'single');
    }
  }
  result.contexts += 1;
}
console.log(JSON.stringify(result));
