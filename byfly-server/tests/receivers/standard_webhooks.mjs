// Verifies one delivery with the official Standard Webhooks library for JavaScript, unmodified.
// Usage: node standard_webhooks.mjs <secret>  (stdin: {"headers": {...}, "body": "..."})
// Prints "valid" and exits 0, or prints the library's error and exits 1.
import { Webhook } from "standardwebhooks";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const delivery = JSON.parse(input);
try {
  new Webhook(process.argv[2]).verify(delivery.body, delivery.headers);
  console.log("valid");
} catch (error) {
  console.log(`invalid: ${error}`);
  process.exit(1);
}
