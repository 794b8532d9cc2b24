// A merchant's TypeScript client, generated from the server's own document: `schema.d.ts` is what
// `openapi-typescript` made of /api/openapi.json, `openapi-fetch` sends typed requests with it.
// Against the demo: create a payment as the guide does, start it on a Kaspi terminal, let the
// demo's simulated customer pay, wait for `paid`; then show that a refusal is typed too. Prints
// one JSON line for the Rust test (tests/tests/generated_client.rs) to check.
import createClient from "openapi-fetch";
import type { components, paths } from "./generated/schema.js";

// Node's own, declared here rather than pulling in @types/node for two variables.
declare const process: { env: Record<string, string | undefined> };

type PaymentStatus = components["schemas"]["PaymentStatus"];

const origin = process.env.BYFLY_ORIGIN ?? "http://127.0.0.1:8080";
const token = process.env.BYFLY_API_TOKEN ?? "";
const client = createClient<paths>({ baseUrl: origin, headers: { "X-API-Token": token } });

const created = await client.POST("/api/payment/init", {
  body: { amount: 57000, description: "Тур в Анталью", customer_phone: "+77011234567" },
  params: { header: { "Idempotency-Key": `order-${Date.now()}` } },
});
if (!created.data) throw new Error(`init: ${JSON.stringify(created.error)}`);
const id: string = created.data.data.transaction_id;

const started = await client.POST("/api/payment/{id}/kaspi", {
  params: { path: { id } },
  body: { payment_method: "kaspi_gold" },
});
if (!started.data) throw new Error(`kaspi: ${JSON.stringify(started.error)}`);
const qr: string = started.data.data.qr_code;

const simulated = await client.POST("/api/dev/simulate/{id}", {
  params: { path: { id } },
  body: { product: "Gold" },
});
if (simulated.error) throw new Error(`simulate: ${JSON.stringify(simulated.error)}`);

let status: PaymentStatus = "processing";
let paid = "0";
for (let attempt = 0; attempt < 200 && status !== "paid"; attempt++) {
  const read = await client.GET("/api/payment/{id}/status", { params: { path: { id } } });
  if (!read.data) throw new Error(`status: ${JSON.stringify(read.error)}`);
  status = read.data.data.status;
  paid = String(read.data.data.paid_amount);
  if (status !== "paid") await new Promise((resolve) => setTimeout(resolve, 100));
}

// A refusal: its `code` is one of the values the document lists for this route and status.
const refused = await client.POST("/api/payment/init", { body: { amount: 0 } });
const code: string | undefined = refused.error?.code;

console.log(JSON.stringify({ transaction_id: id, qr, status, paid, refused: code, http: refused.response.status }));
