<?php
// A webhook receiver written from the integration guide (section "Проверка подписи (HMAC)"):
// it decodes the body into an array and hashes json_encode of it, exactly as the guide's
// verifyWebhook does. Input: one "<signature> <body>" per line on stdin; secret in argv[1].
// Output: one JSON line per input, {"reserialized": ..., "valid": ...}.

// The guide's function, verbatim.
function verifyWebhook($payload, $signature, $secret) {
    $hmac = hash_hmac('sha256', json_encode($payload), $secret);
    return hash_equals($hmac, $signature);
}

$secret = $argv[1];
while (($line = fgets(STDIN)) !== false) {
    $line = rtrim($line, "\n");
    if ($line === '') continue;
    [$signature, $body] = explode(' ', $line, 2);
    // As the guide: $payload = json_decode(file_get_contents('php://input'), true);
    $payload = json_decode($body, true);
    $result = [
        'reserialized' => json_encode($payload),
        'valid' => verifyWebhook($payload, $signature, $secret),
    ];
    echo json_encode($result, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES), "\n";
}
