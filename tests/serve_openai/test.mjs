// `glimpse serve` through the official `openai` npm client (run by run.sh, which starts the
// server): models, a plain answer, an image as a data: URI (equal to what `glimpse describe`
// printed for it), the same streamed, json_schema, and the errors the client maps to its
// exception classes. Any wrong answer exits non-zero.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import OpenAI from 'openai';

const url = process.env.GLIMPSE_URL;
const image = process.env.GLIMPSE_IMAGE;
const expected = process.env.GLIMPSE_EXPECTED;  // describe's greedy answer for GLIMPSE_IMAGE
assert.ok(url && image && expected !== undefined, 'GLIMPSE_URL, GLIMPSE_IMAGE and GLIMPSE_EXPECTED must be set');

const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'test-key', maxRetries: 0, timeout: 120_000 });
const dataUri = `data:image/png;base64,${fs.readFileSync(image).toString('base64')}`;
const withImage = (text) => [{
  role: 'user',
  content: [{ type: 'image_url', image_url: { url: dataUri } }, { type: 'text', text }],
}];

let passed = 0;
async function check(name, fn) {
  await fn();
  passed += 1;
  console.log(`ok - ${name}`);
}

const models = await client.models.list();
const model = models.data[0].id;

await check('models', async () => {
  assert.equal(models.data.length, 1);
  assert.equal(models.data[0].object, 'model');
  const one = await client.models.retrieve(model);
  assert.equal(one.id, model);
});

await check('plain text completion', async () => {
  const r = await client.chat.completions.create({
    model,
    messages: [{ role: 'system', content: 'Answer briefly.' }, { role: 'user', content: 'How many shapes are there?' }],
    temperature: 0,
    max_tokens: 12,
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

await check('image as a data: URI equals describe', async () => {
  const r = await client.chat.completions.create({
    model,
    messages: withImage('Describe this image.'),
    temperature: 0,
    max_tokens: 40,
  });
  assert.equal(r.choices[0].message.content, expected);
  assert.equal(r.choices[0].finish_reason, 'stop');
});

await check('streaming reassembles to the same answer', async () => {
  const stream = await client.chat.completions.create({
    model,
    messages: withImage('Describe this image.'),
    temperature: 0,
    max_tokens: 40,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let chunks = 0;
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    if (chunk.choices.length === 0) continue;
    chunks += 1;
    text += chunk.choices[0].delta.content ?? '';
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.equal(text, expected);
  assert.ok(chunks > 2, `only ${chunks} chunks`);
  assert.equal(finish, 'stop');
  assert.ok(usage && usage.completion_tokens > 0);
});

await check('response_format json_schema', async () => {
  const schema = {
    type: 'object',
    properties: {
      shapes: { type: 'integer' },
      colours: { type: 'array', items: { type: 'string', enum: ['red', 'green', 'blue', 'yellow', 'purple', 'orange', 'black'] }, minItems: 1, maxItems: 3 },
    },
    required: ['shapes', 'colours'],
  };
  const r = await client.chat.completions.create({
    model,
    messages: withImage('How many shapes are there?'),
    temperature: 0,
    max_tokens: 80,
    response_format: { type: 'json_schema', json_schema: { name: 'scene', schema, strict: true } },
  });
  const text = r.choices[0].message.content;
  assert.equal(r.choices[0].finish_reason, 'stop', `not finished: ${text}`);
  const j = JSON.parse(text);
  assert.ok(Number.isInteger(j.shapes), text);
  assert.ok(Array.isArray(j.colours) && j.colours.length >= 1 && j.colours.length <= 3, text);
  for (const c of j.colours) assert.ok(schema.properties.colours.items.enum.includes(c), text);
  assert.deepEqual(Object.keys(j), ['shapes', 'colours']);
});

await check('logprobs', async () => {
  const r = await client.chat.completions.create({
    model,
    messages: withImage('Describe this image.'),
    temperature: 0,
    max_tokens: 40,
    logprobs: true,
    top_logprobs: 2,
  });
  const content = r.choices[0].logprobs.content;
  assert.equal(content.length, r.usage.completion_tokens);
  assert.equal(content.map((t) => t.token).join(''), expected);
  for (const t of content) {
    assert.ok(t.logprob <= 0);
    assert.equal(t.top_logprobs.length, 2);
    assert.equal(t.top_logprobs[0].token, t.token);
  }
});

await check('errors map to the client\'s exception classes', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
    (e) => e instanceof OpenAI.NotFoundError && e.status === 404 && e.code === 'model_not_found',
  );
  await assert.rejects(
    client.chat.completions.create({ model, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,!!!' } }] }] }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && e.code === 'invalid_base64',
  );
  const stranger = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'wrong-key', maxRetries: 0 });
  await assert.rejects(
    stranger.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] }),
    (e) => e instanceof OpenAI.AuthenticationError && e.status === 401,
  );
});

const version = JSON.parse(fs.readFileSync(new URL('./node_modules/openai/package.json', import.meta.url))).version;
console.log(`openai ${version} client: ${passed} checks passed`);
