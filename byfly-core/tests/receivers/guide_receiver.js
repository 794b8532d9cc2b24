// A webhook receiver written from the integration guide (section "Проверка подписи (HMAC)"):
// it parses the body and hashes JSON.stringify of the parsed payload, exactly as the guide's
// verifyWebhook does. Input: one "<signature> <body>" per line on stdin; secret in argv[2].
// Output: one JSON line per input, {"reserialized": ..., "valid": ...}.
const crypto = require('crypto');

// The guide's function, verbatim.
function verifyWebhook(payload, signature, secret) {
  const hmac = crypto
    .createHmac('sha256', secret)
    .update(JSON.stringify(payload))
    .digest('hex');

  return hmac === signature;
}

const secret = process.argv[2];
const input = require('fs').readFileSync(0, 'utf8');
for (const line of input.split('\n')) {
  if (line === '') continue;
  const space = line.indexOf(' ');
  const signature = line.slice(0, space);
  const payload = JSON.parse(line.slice(space + 1));
  const result = {
    reserialized: JSON.stringify(payload),
    valid: verifyWebhook(payload, signature, secret),
  };
  process.stdout.write(JSON.stringify(result) + '\n');
}
