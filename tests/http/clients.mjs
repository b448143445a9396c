// clients.mjs — drives elm-httpd with clients nobody here wrote: the official `openai` and
// `ollama` npm packages (pinned in package-lock.json, installed by scripts/npm-clients.sh).
// tests/integration/test_httpd.c runs it as
//   node clients.mjs NPM_DIR URL MODEL N_GEN PROMPT EXPECTED_FILE
// and it checks that greedy text through every call equals EXPECTED_FILE (elmctl generate
// --local's), that the model lists name MODEL, and that a refused field comes back as the
// SDK's error with HTTP 400. Prints one line per check; exits 1 at the first mismatch.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const [npmDir, url, model, nGenText, prompt, expectedFile] = process.argv.slice(2);
const require = createRequire(join(npmDir, 'package.json'));
const OpenAI = require('openai');
const { Ollama } = require('ollama');
const nGen = Number(nGenText);
const expected = readFileSync(expectedFile, 'utf8');

function check(what, got, want) {
  if (got !== want) {
    console.log(`FAIL ${what}:\n  got:  ${JSON.stringify(got)}\n  want: ${JSON.stringify(want)}`);
    process.exit(1);
  }
  console.log(`ok ${what}`);
}

const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });

const models = await openai.models.list();
check('openai models.list', models.data.map((m) => m.id).join(','), model);

const done = await openai.completions.create({ model, prompt, max_tokens: nGen, temperature: 0 });
check('openai completions', done.choices[0].text, expected);
check('openai completions finish_reason', done.choices[0].finish_reason, 'length');
check('openai completions usage', done.usage.completion_tokens, nGen);

const stream = await openai.completions.create({
  model, prompt, max_tokens: nGen, temperature: 0, stream: true,
  stream_options: { include_usage: true },
});
let text = '';
let usage = null;
for await (const chunk of stream) {
  if (chunk.choices.length) text += chunk.choices[0].text;
  if (chunk.usage) usage = chunk.usage;
}
check('openai completions stream', text, expected);
check('openai completions stream usage', usage && usage.completion_tokens, nGen);

try {
  await openai.completions.create({ model, prompt, n: 2 });
  check('openai n=2 refused', 'accepted', 'refused');
} catch (e) {
  check('openai n=2 refused', `${e.status} ${e.param}`, '400 n');
}

const ollama = new Ollama({ host: url });
const list = await ollama.list();
check('ollama list', list.models.map((m) => m.name).join(','), `${model}:latest`);

const options = { num_predict: nGen, temperature: 0 };
const gen = await ollama.generate({ model, prompt, options, stream: false });
check('ollama generate', gen.response, expected);
check('ollama generate done_reason', gen.done_reason, 'length');
check('ollama generate eval_count', gen.eval_count, nGen);

text = '';
for await (const part of await ollama.generate({ model, prompt, options, stream: true })) {
  text += part.response;
}
check('ollama generate stream', text, expected);

// no prompt, no messages: ollama's request to load the model (it is resident: it stays)
check('ollama generate load', (await ollama.generate({ model, prompt: '' })).done_reason, 'load');
check('ollama chat load', (await ollama.chat({ model, messages: [] })).done_reason, 'load');

const shown = await ollama.show({ model });
check('ollama show family', shown.details.family, 'llama');
check('ollama version', typeof (await ollama.version()).version, 'string');
