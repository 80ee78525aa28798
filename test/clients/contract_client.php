<?php
// A client of the contract's REST API as its PHP users write one (curl, JSON string as POST fields).
// usage: php contract_client.php BASE_URL API_KEY MODE BODY_JSON
// Prints one JSON line: {"status", "id", "download_urls", "png_bytes"}; exits non-zero on failure.

[$_, $base, $key, $mode, $body] = $argv;

function call(string $url, string $key, ?string $post = null): array {
    $ch = curl_init($url);
    curl_setopt($ch, CURLOPT_RETURNTRANSFER, true);
    curl_setopt($ch, CURLOPT_TIMEOUT, 30);
    curl_setopt($ch, CURLOPT_HTTPHEADER, ["API-Key: $key"]);
    if ($post !== null) {
        curl_setopt($ch, CURLOPT_POST, true);
        curl_setopt($ch, CURLOPT_POSTFIELDS, $post); // sent as application/x-www-form-urlencoded
    }
    $out = curl_exec($ch);
    $code = curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
    curl_close($ch);
    return [$code, $out];
}

[$code, $out] = call("$base/sd/$mode/v1", $key, $body);
$reply = json_decode($out, true);
if ($code !== 200 || $reply['status'] === 'FAILURE') {
    echo $out, "\n";
    exit(1);
}
$deadline = microtime(true) + 60;
while ($reply['status'] === 'PENDING') {
    if (microtime(true) > $deadline) { fwrite(STDERR, "timed out\n"); exit(1); }
    usleep(50000);
    [$code, $out] = call("$base/sd/$mode/v1/status/" . $reply['id'], $key);
    $reply = json_decode($out, true);
}
$sizes = [];
foreach ($reply['download_urls'] ?? [] as $url) {
    [$code, $png] = call($url, $key);
    if ($code !== 200 || substr($png, 0, 8) !== "\x89PNG\r\n\x1a\n") { fwrite(STDERR, "bad image $url\n"); exit(1); }
    $sizes[] = strlen($png);
}
echo json_encode(['status' => $reply['status'], 'id' => $reply['id'] ?? null, 'download_urls' => $reply['download_urls'] ?? null, 'png_bytes' => $sizes]), "\n";
exit($reply['status'] === 'SUCCESS' ? 0 : 1);
