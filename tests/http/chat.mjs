// chat.mjs — the chat and embedding calls of the official `openai` and `ollama` npm packages
// (pinned in package-lock.json) against elm-httpd. tests/integration/test_httpd_chat.c runs
//   node chat.mjs NPM_DIR URL chat MODEL MESSAGES_FILE EXPECTED_FILE
//     EXPECTED_FILE: {"content": the greedy reply, "n_predict": N, "n_gen": its tokens}
//   node chat.mjs NPM_DIR URL embed MODEL TEXTS_FILE EXPECTED_FILE
//     EXPECTED_FILE: `elmctl embed --local --json`'s document for the texts
// Greedy chat replies (streamed and not) must equal the expected text; vectors must equal
// elmctl's as float32 (openai's SDK asks for base64 and decodes it itself). Prints one line per
// check; exits 1 at the first mismatch.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const [npmDir, url, mode, model, inputFile, expectedFile] = process.argv.slice(2);
const require = createRequire(join(npmDir, 'package.json'));
const OpenAI = require('openai');
const { Ollama } = require('ollama');
const input = JSON.parse(readFileSync(inputFile, 'utf8'));
const expected = JSON.parse(readFileSync(expectedFile, 'utf8'));

function check(what, got, want) {
  if (got !== want) {
    console.log(`FAIL ${what}:\n  got:  ${JSON.stringify(got)}\n  want: ${JSON.stringify(want)}`);
    process.exit(1);
  }
  console.log(`ok ${what}`);
}

// Whether vectors (arrays of numbers) equal elmctl's, compared as float32.
function checkVectors(what, got) {
  const want = expected.embeddings.map((e) => e.embedding);
  check(`${what} count`, got.length, want.length);
  got.forEach((v, i) => {
    const same = v.length === want[i].length &&
      Array.from(v).every((x, k) => Math.fround(x) === Math.fround(want[i][k]));
    check(`${what} vector ${i}`, same, true);
  });
}

const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
const ollama = new Ollama({ host: url });

if (mode === 'chat') {
  const messages = input;
  const n = expected.n_predict;
  const finish = expected.n_gen < n ? 'stop' : 'length';
  const done = await openai.chat.completions.create({ model, messages, max_tokens: n, temperature: 0 });
  check('openai chat', done.choices[0].message.content, expected.content);
  check('openai chat finish_reason', done.choices[0].finish_reason, finish);
  check('openai chat usage', done.usage.completion_tokens, expected.n_gen);

  const stream = await openai.chat.completions.create({
    model, messages, max_tokens: n, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.choices.length) text += chunk.choices[0].delta.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  check('openai chat stream', text, expected.content);
  check('openai chat stream usage', usage && usage.completion_tokens, expected.n_gen);

  const options = { num_predict: n, temperature: 0 };
  const reply = await ollama.chat({ model, messages, options, stream: false });
  check('ollama chat', reply.message.content, expected.content);
  check('ollama chat eval_count', reply.eval_count, expected.n_gen);
  text = '';
  for await (const part of await ollama.chat({ model, messages, options, stream: true })) {
    text += part.message.content;
  }
  check('ollama chat stream', text, expected.content);
} else if (mode === 'embed') {
  const texts = input;
  const res = await openai.embeddings.create({ model, input: texts });
  checkVectors('openai embeddings', res.data.map((d) => d.embedding));
  const one = await openai.embeddings.create({ model, input: texts[0], encoding_format: 'float' });
  check('openai embeddings float', one.data[0].embedding.length, expected.n_embd);
  const emb = await ollama.embed({ model, input: texts });
  checkVectors('ollama embed', emb.embeddings);
} else {
  console.log(`unknown mode ${mode}`);
  process.exit(2);
}
