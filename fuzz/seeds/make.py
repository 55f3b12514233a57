#!/usr/bin/env python3
"""Writes the hand-made seed inputs of each fuzz target into seeds/<target>/, one file per seed,
named after what it tries. Run from fuzz/: python3 seeds/make.py. The binary layouts are the ones
each target's header comment describes. Files named regression-* are inputs that once failed a
target, kept by hand; this script leaves them alone."""
import hashlib
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def response(status, body, selector=0, seconds=0, nanos=0):
    return struct.pack(">HBiI", status, selector, seconds, nanos) + (body.encode() if isinstance(body, str) else body)


T = "token_response"
ok = '{"access_token":"1000.abc.def","api_domain":"https://www.zohoapis.eu","token_type":"Bearer","expires_in":3600}'
for name, status, body, extra in [
    ("success", 200, ok, {}),
    ("success-subsecond-request", 200, ok, {"nanos": 999_999_999}),
    ("success-at-max-time", 200, ok, {"selector": 0x80, "seconds": -10}),
    ("success-before-epoch", 200, ok, {"selector": 0x82, "seconds": -2, "nanos": 500_000_000}),
    ("legacy-millis", 200, '{"access_token":"1000.a","expires_in_sec":3600,"expires_in":3600000}', {}),
    ("legacy-millis-too-small", 200, '{"access_token":"1000.a","expires_in_sec":3600,"expires_in":500}', {}),
    ("code-exchange", 200, '{"access_token":"1000.a","refresh_token":"1000.r","expires_in":3600}', {}),
    ("expires-in-string", 200, '{"access_token":"1000.a","expires_in":"3600"}', {}),
    ("expires-in-negative", 200, '{"access_token":"1000.a","expires_in":-1}', {}),
    ("expires-in-zero", 200, '{"access_token":"1000.a","expires_in":0}', {}),
    ("expires-in-1e12", 200, '{"access_token":"1000.a","expires_in":1000000000000}', {}),
    ("expires-in-float", 200, '{"access_token":"1000.a","expires_in":3600.5}', {}),
    ("expires-in-missing", 200, '{"access_token":"1000.a"}', {}),
    ("token-blank", 200, '{"access_token":"  ","expires_in":3600}', {}),
    ("token-number", 200, '{"access_token":12345,"expires_in":3600}', {}),
    ("api-domain-not-url", 200, '{"access_token":"1000.a","expires_in":3600,"api_domain":"javascript:x"}', {}),
    ("invalid-client", 200, '{"error":"invalid_client"}', {}),
    ("invalid-code", 200, '{"error":"invalid_code"}', {}),
    ("throttle-400", 400, '{"error_description":"You have made too many requests continuously.","error":"Access Denied","status":"failure"}', {}),
    ("throttle-localized", 400, '{"error_description":"\u60a8\u5df2\u8fde\u7eed\u63d0\u51fa\u8fc7\u591a\u8bf7\u6c42","error":"\u62d2\u7edd\u8bbf\u95ee","status":"failure"}', {}),
    ("throttle-429-empty", 429, "", {}),
    ("unknown-error-long", 200, '{"error":"' + "x" * 300 + '\\u0007\\n"}', {}),
    ("error-echoes-token", 200, '{"access_token":"","error":"1000.abc.def"}', {}),
    ("html-502", 502, "<html><body>Bad gateway</body></html>", {}),
    ("html-200", 200, "<!DOCTYPE html><html></html>", {}),
    ("truncated", 200, '{"access_token":"1000.a', {}),
    ("empty", 200, "", {}),
    ("array", 200, "[1,2,3]", {}),
    ("duplicate-keys", 200, '{"access_token":"a","access_token":"b","expires_in":3600}', {}),
    ("device-pending", 200, '{"error":"authorization_pending"}', {}),
    ("device-other-dc", 200, '{"error":"other_dc","user_location":"eu","accounts-server":"https://accounts.zoho.eu"}', {}),
    ("device-other-dc-bad-url", 200, '{"error":"other_dc","accounts-server":"1000.abc@evil"}', {}),
    ("status-zero", 0, ok, {}),
    ("status-max", 65535, "{}", {}),
]:
    write(T, name, response(status, body, **extra))

T = "go_duration"
for name, text in [
    ("minutes", "20m"), ("seconds", "90s"), ("hours-minutes", "1h30m"), ("fraction", "1.5h"), ("millis", "500ms"),
    ("micro-sign", "250\u00b5s"), ("micro-us", "250us"), ("nanos", "1ns"), ("greek-mu", "1\u03bcs"),
    ("dot-first", ".5h"), ("dot-last", "5.h"), ("dot-alone", ".h"), ("bare-zero", "0"), ("negative", "-5m"),
    ("plus", "+5m"), ("space-inside", "1h 30m"), ("padded", " 20m\n"), ("no-unit", "20"), ("unit-only", "m"),
    ("exponent", "1e3s"), ("infinity", "infs"), ("many-dots", "1.2.3s"), ("huge", "9" * 400 + "h"),
    ("tiny", "0." + "0" * 300 + "1ns"), ("long-chain", "1h" * 200), ("u64-max-ns", "18446744073709551615ns"),
    ("beyond-duration", "5124095576030431h"), ("leading-zeros", "00000000000000000000000000000001s"),
]:
    write(T, name, b"\x00" + text.encode())
write(T, "recipe", b"\x01" + bytes(range(64)))
for name, nanos in [("roundtrip-zero", 0), ("roundtrip-hour", 3600 * 10**9 + 1), ("roundtrip-max", 2**64 - 1), ("roundtrip-micro", 1500)]:
    write(T, name, b"\x02" + struct.pack("<Q", nanos))

T = "accounts_url"
for name, text in [
    ("us", "https://accounts.zoho.com"), ("eu-slash", "https://accounts.zoho.eu/"), ("ca", "https://accounts.zohocloud.ca"),
    ("loopback", "http://127.0.0.1:8080"), ("loopback-other-port", "http://127.0.0.1:8081"),
    ("localhost", "http://localhost:8080"), ("loopback-ipv6", "http://[::1]:8080"), ("loopback-mapped", "http://[::ffff:127.0.0.1]:8080"),
    ("loopback-decimal", "http://2130706433:8080"), ("loopback-octal", "http://0177.0.0.1:8080"),
    ("userinfo", "https://accounts.zoho.com@evil.com"), ("userinfo-reverse", "https://evil.com@accounts.zoho.com"),
    ("userinfo-password", "https://accounts.zoho.com:443@evil.com"), ("backslash-userinfo", "https://evil.com\\@accounts.zoho.com"),
    ("backslash", "https:\\\\accounts.zoho.com"), ("backslash-host", "https://accounts.zoho.com\\.evil.com"),
    ("mixed-case", "HtTpS://ACCOUNTS.Zoho.COM"), ("trailing-dot", "https://accounts.zoho.com."),
    ("port-443", "https://accounts.zoho.com:443"), ("port-8443", "https://accounts.zoho.com:8443"),
    ("port-80-http", "http://accounts.zoho.com:80"), ("http-official", "http://accounts.zoho.com"),
    ("metadata", "http://169.254.169.254"), ("metadata-https", "https://169.254.169.254/latest/meta-data/"),
    ("metadata-hex", "http://0xa9fea9fe"), ("metadata-ipv6", "http://[fd00:ec2::254]"),
    ("percent-host", "https://accounts%2Ezoho%2Ecom"), ("percent-dot", "https://accounts.zoho.com%2E"),
    ("percent-at", "https://accounts.zoho.com%40evil.com"), ("idna-cyrillic-o", "https://accounts.zoh\u043e.com"),
    ("idna-punycode", "https://xn--accounts-zoho-com.evil"), ("fullwidth-dots", "https://accounts\uff0ezoho\uff0ecom"),
    ("fullwidth-letters", "https://\uff41ccounts.zoho.com"), ("suffix", "https://accounts.zoho.com.evil.com"),
    ("prefix", "https://evilaccounts.zoho.com"), ("path", "https://accounts.zoho.com/oauth/v2/token"),
    ("query", "https://accounts.zoho.com?x=1"), ("fragment", "https://accounts.zoho.com#x"),
    ("dot-segment", "https://accounts.zoho.com/."), ("whitespace", " \thttps://accounts.zoho.com\n"),
    ("tab-inside", "https://accounts.zo\tho.com"), ("ftp", "ftp://accounts.zoho.com"), ("no-scheme", "accounts.zoho.com"),
    ("scheme-relative", "//accounts.zoho.com"), ("file", "file:///etc/passwd"), ("data", "data:text/plain,x"),
    ("ipv6-zone", "http://[fe80::1%25eth0]:8080"), ("empty-port", "https://accounts.zoho.com:"),
    ("null", "https://accounts.zoho.com\u0000.evil.com"),
]:
    write(T, name, text)

T = "template"


def template(parts, seconds=0, selector=0):
    return struct.pack(">iB", seconds, selector) + "\0".join(parts).encode()


fields = ["abc.def", "https://www.zohoapis.eu", "Bearer"]
for name, sources, extra in [
    ("header", ["Zoho-oauthtoken {{ access_token }}"], {}),
    ("json", ['{"token": {{ access_token|tojson }}, "api": "{{ api_domain }}", "expires": {{ expires_at_unix }}}'], {}),
    ("expiry", ["{{ expires_at }} {{ expires_at_unix }}"], {}),
    ("expiry-at-max", ["{{ expires_at }}"], {"seconds": -1, "selector": 0x80 | 0x7C}),
    ("expiry-at-min", ["{{ expires_at }}"], {"seconds": 1, "selector": 0x81 | 0x7C}),
    ("syntax-error", ["{{ access_token "], {}),
    ("undefined", ["{{ client_secret }}"], {}),
    ("int-filter", ["{{ access_token | int }}"], {}),
    ("fuel", ["{% for x in range(100000) %}{% for y in range(100000) %}{% endfor %}{% endfor %}"], {}),
    ("big-repeat", ["{{ 'x' * 70000 }}"], {}),
    ("huge-repeat", ["{{ 'x' * 100000000000 }}"], {}),
    ("nested-repeat", ["{{ ('x' * 60000) * 60000 }}"], {}),
    ("list-repeat", ["{{ [access_token] * 100000000 }}"], {}),
    ("include-file", ['{% include "/tmp/zoho-token-operator-fuzz-sentinel" %}'], {}),
    ("import-file", ['{% import "/tmp/zoho-token-operator-fuzz-sentinel" as x %}'], {}),
    ("env", ["{{ env.ZOHO_FUZZ_ENV_SENTINEL }}{{ ZOHO_FUZZ_ENV_SENTINEL }}"], {}),
    ("globals", ["{{ self }}{{ namespace() }}{{ debug() }}"], {}),
    ("recursion", ["{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}"], {}),
    ("format", ["{{ '%999999999s'|format(access_token) }}"], {}),
    ("indent", ["{{ access_token|indent(100000) }}"], {}),
    ("center", ["{{ access_token|center(100000000) }}"], {}),
    ("filters", ["{{ access_token|upper|reverse|replace('.', '-')|b64encode }}"], {}),
    ("set-block", ["{% set x %}{{ access_token }}{% endset %}{{ x * 3 }}"], {}),
    ("many-keys", ["{{ access_token }}"] * 8, {}),
]:
    write(T, name, template(fields + sources, **extra))
write(T, "token-with-braces", template(["{{ x }}%}", "https://x", "{{", "{{ access_token }}"]))

T = "stored_token"
# stored_token's input is `arbitrary`-encoded; random bytes of a few lengths start it.
for n in (16, 64, 256, 1024):
    write(T, f"bytes-{n}", hashlib.sha256(str(n).encode()).digest() * (n // 32))
