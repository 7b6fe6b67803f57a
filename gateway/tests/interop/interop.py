#!/usr/bin/env python3
"""OAuth interop checks against a running `p8fs serve`, with clients no one here wrote.

authlib (OAuth2Session) runs the device flow (RFC 8628) and the authorization code flow with
PKCE S256; PyJWT verifies the access tokens against the server's JWKS (EdDSA, audience and
issuer checked). The pages a person would use in a browser are driven with `requests` (a
session with cookies, forms posted with their hidden csrf fields); the Chromium runs are in
device.mjs and pkce.mjs. Every check that fails raises, so the process exits non-zero.

Subcommands (all take --base URL, the issuer):
  device   authlib device flow, PyJWT, refresh rotation and reuse detection, replayed and
           concurrently redeemed device codes, slow_down, access_denied
  pkce     authlib code flow with PKCE, PyJWT, wrong verifier, replayed code, redirect_uri
           tricks at the authorize and token endpoints, plain PKCE refused, code after expiry
  attacks  brute-forced user codes answered with rate limiting
  approve-device  only the browser half of the device flow (for the Rust tests)
"""

import argparse
import base64
import hashlib
import json
import re
import secrets
import sys
import threading
import time
import urllib.parse
from html.parser import HTMLParser

import jwt
import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from jwt import PyJWKClient

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
TIMEOUT = 15


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


# ---------------------------------------------------------------------------------------------
# The pages, as a browser without JavaScript uses them.


class Forms(HTMLParser):
    """Collects the forms of a page: action, method, inputs and buttons; and the ids present."""

    def __init__(self):
        super().__init__()
        self.forms = []
        self.ids = {}
        self._text_of = None

    def handle_starttag(self, tag, attrs):
        attrs = {k: (v or "") for k, v in attrs}
        if "id" in attrs:
            self.ids[attrs["id"]] = ""
            self._text_of = attrs["id"]
        if tag == "form":
            self.forms.append({"action": attrs.get("action", ""), "method": attrs.get("method", "get").lower(),
                               "inputs": [], "buttons": []})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"].append(attrs)
        elif tag == "button" and self.forms:
            self.forms[-1]["buttons"].append(attrs)

    def handle_endtag(self, tag):
        self._text_of = None

    def handle_data(self, data):
        if self._text_of is not None:
            self.ids[self._text_of] += data


def parse(html):
    forms = Forms()
    forms.feed(html)
    return forms


class Browser:
    """A cookie-keeping client that fills the server's forms as a person would."""

    def __init__(self, base):
        self.base = base
        self.http = requests.Session()

    def form_with(self, response, element_id):
        page = parse(response.text)
        for form in page.forms:
            ids = [i.get("id") for i in form["inputs"]] + [b.get("id") for b in form["buttons"]]
            if element_id in ids:
                return form
        return None

    def submit(self, response, form, values, button=None, follow=True):
        data = {i["name"]: i.get("value", "") for i in form["inputs"]
                if i.get("name") and i.get("type", "text") == "hidden"}
        data.update(values)
        if button is not None and button.get("name"):
            data[button["name"]] = button.get("value", "")
        url = urllib.parse.urljoin(response.url, form["action"] or response.url)
        return self.http.post(url, data=data, allow_redirects=follow, timeout=TIMEOUT)

    def sign_in_if_asked(self, response, username, password, follow=True):
        form = self.form_with(response, "username")
        if form is None:
            return response
        after = self.submit(response, form, {"username": username, "password": password}, follow=follow)
        if "id=\"error\"" in after.text and self.form_with(after, "username") is not None:
            raise AssertionError(f"sign-in refused: {parse(after.text).ids.get('error', '').strip()}")
        return after

    def sign_in(self, username, password):
        """Signs in through the sign-in page."""
        page = self.http.get(self.base + "/oauth/signin", timeout=TIMEOUT)
        check(self.form_with(page, "username") is not None, f"no sign-in form at {page.url}")
        return self.sign_in_if_asked(page, username, password)

    def decide(self, response, decision):
        form = self.form_with(response, decision)
        check(form is not None, f"no {decision} button on {response.url}: {error_text(response)}")
        button = next(b for b in form["buttons"] if b.get("id") == decision)
        return self.submit(response, form, {}, button=button, follow=False)

    def device(self, url, username, password, code=None, decision="approve"):
        """Opens the verification page, signs in, enters `code` if asked, and decides."""
        page = self.http.get(url, timeout=TIMEOUT)
        page = self.sign_in_if_asked(page, username, password)
        if self.form_with(page, "user_code") is not None:
            check(code is not None, "the device page asks for a code and none was given")
            page = self.enter_code(page, code)
        result = self.follow(self.decide(page, decision))
        ids = parse(result.text).ids
        check("result" in ids, f"no result after {decision}: {error_text(result)}")
        return ids["result"].strip()

    def enter_code(self, page, code):
        form = self.form_with(page, "user_code")
        button = next((b for b in form["buttons"] if b.get("id") == "continue"), None)
        return self.submit(page, form, {"user_code": code}, button=button)

    def follow(self, response):
        while response.is_redirect:
            response = self.http.get(urllib.parse.urljoin(response.url, response.headers["location"]),
                                     allow_redirects=False, timeout=TIMEOUT)
        return response

    def authorize(self, url, username, password, redirect_uri, decision="approve"):
        """Follows an authorization request to the redirect back to the client; returns it."""
        response = self.http.get(url, allow_redirects=False, timeout=TIMEOUT)
        for _ in range(10):
            location = response.headers.get("location")
            if response.is_redirect and location:
                target = urllib.parse.urljoin(response.url, location)
                if target.startswith(redirect_uri):
                    return target
                response = self.http.get(target, allow_redirects=False, timeout=TIMEOUT)
                continue
            if self.form_with(response, "username") is not None:
                response = self.sign_in_if_asked(response, username, password, follow=False)
                continue
            if self.form_with(response, decision) is not None:
                response = self.decide(response, decision)
                continue
            raise AssertionError(f"stuck at {response.url} ({response.status_code}): {error_text(response)}")
        raise AssertionError("too many steps in the authorization request")


def error_text(response):
    ids = parse(response.text).ids
    return ids.get("error", response.text[:300]).strip()


# ---------------------------------------------------------------------------------------------
# Helpers for the protocol side.


def metadata(base):
    response = requests.get(base + "/.well-known/oauth-authorization-server", timeout=TIMEOUT)
    check(response.status_code == 200, f"metadata: {response.status_code}")
    md = response.json()
    check(md["issuer"] == base, f"metadata issuer {md['issuer']!r} is not {base!r}")
    for field in ("token_endpoint", "authorization_endpoint", "device_authorization_endpoint",
                  "revocation_endpoint", "jwks_uri"):
        check(field in md, f"metadata lacks {field}")
    check(md["jwks_uri"] == base + "/.well-known/jwks.json", f"jwks_uri is {md['jwks_uri']}")
    methods = md.get("code_challenge_methods_supported", [])
    check("S256" in methods and "plain" not in methods, f"code_challenge_methods_supported: {methods}")
    check(DEVICE_GRANT in md.get("grant_types_supported", []), "the device grant is not advertised")
    return md


def verify_access_token(md, token, audience, client_id):
    """PyJWT against the JWKS: EdDSA only, audience and issuer checked, RFC 9068 claims present."""
    header = jwt.get_unverified_header(token)
    check(header.get("alg") == "EdDSA", f"alg {header.get('alg')}")
    check(header.get("typ") in ("at+jwt", "application/at+jwt"), f"typ {header.get('typ')}")
    key = PyJWKClient(md["jwks_uri"]).get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience=audience, issuer=md["issuer"],
                        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]})
    check(claims.get("client_id") == client_id, f"client_id claim {claims.get('client_id')}")
    for claim in ("tenant", "scope"):
        check(claim in claims, f"no {claim} claim")
    # A token signed by another key with the same kid must not verify.
    try:
        jwt.decode(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"), key.key,
                   algorithms=["EdDSA"], audience=audience, issuer=md["issuer"])
        raise AssertionError("a token with a damaged signature verified")
    except jwt.InvalidSignatureError:
        pass
    # Wrong audience and issuer are refused by PyJWT's own checks.
    for kwargs in ({"audience": audience + "-other", "issuer": md["issuer"]},
                   {"audience": audience, "issuer": md["issuer"] + "/other"}):
        try:
            jwt.decode(token, key.key, algorithms=["EdDSA"], **kwargs)
            raise AssertionError(f"verified with {kwargs}")
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
            pass
    return claims


def rest_status(base, token):
    return requests.get(base + "/v1/kv", headers={"authorization": f"Bearer {token}"},
                        timeout=TIMEOUT).status_code


def oauth_error(call):
    """Runs `call`, which must fail with an OAuth error; returns the error code."""
    try:
        call()
    except OAuthError as error:
        return error.error
    raise AssertionError("the request succeeded and should not have")


def raw_token_request(md, **form):
    return requests.post(md["token_endpoint"], data=form, timeout=TIMEOUT)


def device_authorization(session, md, scope=None):
    data = {"client_id": session.client_id}
    if scope:
        data["scope"] = scope
    response = session.post(md["device_authorization_endpoint"], data=data, withhold_token=True,
                            timeout=TIMEOUT)
    check(response.status_code == 200, f"device authorization: {response.status_code} {response.text}")
    grant = response.json()
    for field in ("device_code", "user_code", "verification_uri", "verification_uri_complete",
                  "expires_in", "interval"):
        check(field in grant, f"device authorization response lacks {field}")
    code = grant["user_code"]
    check(len(code) == 9 and code[4] == "-" and all(c in USER_CODE_ALPHABET for c in code.replace("-", "")),
          f"user code {code!r} is not XXXX-XXXX from the consonant alphabet")
    return grant


def poll_device(session, md, grant, deadline=30):
    """Polls as RFC 8628 says: at `interval`, five seconds more after each slow_down."""
    interval = grant["interval"]
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        time.sleep(interval)
        try:
            return session.fetch_token(md["token_endpoint"], grant_type=DEVICE_GRANT,
                                       device_code=grant["device_code"])
        except OAuthError as error:
            if error.error == "authorization_pending":
                continue
            if error.error == "slow_down":
                interval += 5
                continue
            raise
    raise AssertionError("the device flow did not finish in time")


def public_session(client_id, **kwargs):
    return OAuth2Session(client_id=client_id, token_endpoint_auth_method="none", **kwargs)


# ---------------------------------------------------------------------------------------------
# Subcommands.


def cmd_approve_device(args):
    browser = Browser(args.base)
    result = browser.device(args.url, args.username, args.password, args.code, args.decision)
    print(json.dumps({"result": result}))


def cmd_device(args):
    md = metadata(args.base)
    client_id = "p8fs-cli"
    session = public_session(client_id)

    # authorization_pending before approval, then slow_down for polling faster than `interval`
    # (on a grant of its own: slow_down lengthens that grant's interval by 5 s).
    grant = device_authorization(session, md)
    time.sleep(grant["interval"])
    check(oauth_error(lambda: session.fetch_token(md["token_endpoint"], grant_type=DEVICE_GRANT,
                                                  device_code=grant["device_code"])) == "authorization_pending",
          "expected authorization_pending before approval")
    errors = [oauth_error(lambda: session.fetch_token(md["token_endpoint"], grant_type=DEVICE_GRANT,
                                                      device_code=grant["device_code"]))
              for _ in range(2)]
    check("slow_down" in errors, f"polling without pause gave {errors}, not slow_down")
    log("device: authorization_pending and slow_down as RFC 8628 says")

    # Approve with the complete link (the code is carried), then poll with authlib.
    grant = device_authorization(session, md, scope="kv:read kv:write")
    result = Browser(args.base).device(grant["verification_uri_complete"], args.username, args.password)
    log(f"device: approved ({result})")
    token = poll_device(session, md, grant)
    check(token.get("token_type", "").lower() == "bearer", f"token_type {token.get('token_type')}")
    check(set(token["scope"].split()) == {"kv:read", "kv:write"}, f"scope {token['scope']}")
    claims = verify_access_token(md, token["access_token"], args.audience, client_id)
    check(claims["sub"] == args.username, f"sub {claims['sub']}")
    check(rest_status(args.base, token["access_token"]) == 200, "the access token does not work on /v1/kv")
    log("device: token verified with PyJWT and accepted by the REST API")

    # The device code is single-use.
    replay = oauth_error(lambda: session.fetch_token(md["token_endpoint"], grant_type=DEVICE_GRANT,
                                                     device_code=grant["device_code"]))
    check(replay in ("invalid_grant", "expired_token"), f"replayed device code: {replay}")
    log(f"device: replayed device code refused ({replay})")

    # Refresh rotates; presenting the old refresh token again revokes the whole family.
    first = token["refresh_token"]
    refreshed = session.refresh_token(md["token_endpoint"], refresh_token=first)
    second = refreshed["refresh_token"]
    check(second != first, "the refresh token was not rotated")
    verify_access_token(md, refreshed["access_token"], args.audience, client_id)
    check(rest_status(args.base, refreshed["access_token"]) == 200, "the refreshed token does not work")
    reuse = oauth_error(lambda: session.refresh_token(md["token_endpoint"], refresh_token=first))
    check(reuse == "invalid_grant", f"reused refresh token: {reuse}")
    after = oauth_error(lambda: session.refresh_token(md["token_endpoint"], refresh_token=second))
    check(after == "invalid_grant", f"the rotated refresh token still works after reuse: {after}")
    check(rest_status(args.base, refreshed["access_token"]) == 401,
          "the family's access token still works after the refresh token was reused")
    log("device: refresh rotation, reuse detection revoked the family and its access token")

    # Concurrent polls of one approved device code: exactly one gets a token.
    grant = device_authorization(session, md)
    Browser(args.base).device(grant["verification_uri"], args.username, args.password, grant["user_code"])
    time.sleep(grant["interval"])
    outcomes = []

    def poll():
        response = raw_token_request(md, grant_type=DEVICE_GRANT, device_code=grant["device_code"],
                                     client_id=client_id)
        outcomes.append((response.status_code, response.json().get("error")))

    threads = [threading.Thread(target=poll) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o[0] == 200]
    check(len(winners) == 1, f"concurrent polls: {outcomes}")
    log(f"device: 8 concurrent polls, one token ({sorted(set(o[1] for o in outcomes if o[1]))} for the rest)")

    # Denied in the browser: access_denied.
    grant = device_authorization(session, md)
    result = Browser(args.base).device(grant["verification_uri_complete"], args.username, args.password,
                                       decision="deny")
    denied = oauth_error(lambda: poll_device(session, md, grant))
    check(denied == "access_denied", f"after deny: {denied}")
    log("device: denied request answered access_denied")

    # A device code the server never issued.
    bogus = raw_token_request(md, grant_type=DEVICE_GRANT, device_code=secrets.token_urlsafe(32),
                              client_id=client_id)
    check(bogus.status_code == 400 and bogus.json()["error"] in ("invalid_grant", "expired_token"),
          f"unknown device code: {bogus.status_code} {bogus.text}")
    print(json.dumps({"ok": "device"}))


def s256(verifier):
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def cmd_pkce(args):
    md = metadata(args.base)
    redirect_uri = args.redirect_uri
    session = public_session(args.client_id, redirect_uri=redirect_uri, scope="kv:read",
                             code_challenge_method="S256")
    browser = Browser(args.base)

    def authorize(verifier, **extra):
        url, state = session.create_authorization_url(md["authorization_endpoint"], code_verifier=verifier,
                                                      **extra)
        location = browser.authorize(url, args.username, args.password, redirect_uri)
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
        check(query.get("state") == state, f"state {query.get('state')!r} is not {state!r}")
        check(query.get("iss") == md["issuer"], f"iss {query.get('iss')!r} (RFC 9207)")
        check("code" in query, f"no code in {location}")
        return location, query["code"]

    # The flow as authlib does it.
    verifier = generate_token(48)
    location, _ = authorize(verifier)
    token = session.fetch_token(md["token_endpoint"], authorization_response=location, code_verifier=verifier)
    claims = verify_access_token(md, token["access_token"], args.audience, args.client_id)
    check(claims["sub"] == args.username, f"sub {claims['sub']}")
    check(token["scope"] == "kv:read", f"scope {token['scope']}")
    check(rest_status(args.base, token["access_token"]) == 200, "the access token does not work")
    log("pkce: authlib code flow with S256, token verified with PyJWT")

    # The same code again: refused.
    replay = oauth_error(lambda: session.fetch_token(md["token_endpoint"], authorization_response=location,
                                                     code_verifier=verifier))
    check(replay == "invalid_grant", f"replayed code: {replay}")
    log("pkce: replayed code refused")

    # A verifier that does not match the challenge: refused.
    verifier = generate_token(48)
    location, _ = authorize(verifier)
    wrong = oauth_error(lambda: session.fetch_token(md["token_endpoint"], authorization_response=location,
                                                    code_verifier=generate_token(48)))
    check(wrong == "invalid_grant", f"wrong verifier: {wrong}")
    # No verifier at all.
    verifier = generate_token(48)
    location, code = authorize(verifier)
    missing = raw_token_request(md, grant_type="authorization_code", code=code, redirect_uri=redirect_uri,
                                client_id=args.client_id)
    check(missing.status_code == 400 and missing.json()["error"] in ("invalid_grant", "invalid_request"),
          f"no verifier: {missing.status_code} {missing.text}")
    log("pkce: wrong and missing verifiers refused")

    # The token request must name the same redirect_uri.
    verifier = generate_token(48)
    location, code = authorize(verifier)
    other = raw_token_request(md, grant_type="authorization_code", code=code, code_verifier=verifier,
                              redirect_uri=redirect_uri + "/other", client_id=args.client_id)
    check(other.status_code == 400 and other.json()["error"] == "invalid_grant",
          f"other redirect_uri at the token endpoint: {other.status_code} {other.text}")
    # Another client cannot redeem the code.
    verifier = generate_token(48)
    location, code = authorize(verifier)
    stolen = raw_token_request(md, grant_type="authorization_code", code=code, code_verifier=verifier,
                               redirect_uri=redirect_uri, client_id="p8fs-cli")
    check(stolen.status_code in (400, 401) and stolen.json()["error"] in ("invalid_grant", "invalid_client",
                                                                          "unauthorized_client"),
          f"code redeemed by another client: {stolen.status_code} {stolen.text}")
    log("pkce: redirect_uri and client mismatches at the token endpoint refused")

    # redirect_uri tricks at the authorize endpoint: an error page, never a redirect to them.
    parts = urllib.parse.urlsplit(redirect_uri)
    tricks = [
        "https://evil.example/callback",
        redirect_uri + "/../evil",
        redirect_uri + "?next=https://evil.example",
        redirect_uri + "#fragment",
        redirect_uri + "/",
        redirect_uri.upper(),
        # (Another port of this loopback URI is accepted: the client is public, RFC 8252 7.3.)
        f"{parts.scheme}://{parts.hostname}:{(parts.port or 80) + 1}{parts.path}x",
        f"{parts.scheme}://{parts.netloc}.evil.example{parts.path}",
        f"{parts.scheme}://{parts.netloc}@evil.example{parts.path}",
        urllib.parse.quote(redirect_uri, safe=""),
    ]
    for trick in tricks:
        url, _ = session.create_authorization_url(md["authorization_endpoint"], code_verifier=generate_token(48),
                                                  redirect_uri=trick)
        response = browser.http.get(url, allow_redirects=False, timeout=TIMEOUT)
        location = response.headers.get("location", "")
        check(not location.startswith(trick) and "evil.example" not in location,
              f"redirect_uri {trick!r} was redirected to: {location}")
        check(400 <= response.status_code < 500 and "id=\"error\"" in response.text,
              f"redirect_uri {trick!r}: {response.status_code} without an error page")
    log(f"pkce: {len(tricks)} redirect_uri tricks answered with an error page, no redirect")

    # PKCE is required and plain is refused: no code is issued.
    challenge = s256(generate_token(48))
    for params in ({"code_challenge": challenge, "code_challenge_method": "plain"},
                   {"code_challenge": generate_token(48), "code_challenge_method": "plain"},
                   {}):
        query = {"response_type": "code", "client_id": args.client_id, "redirect_uri": redirect_uri,
                 "state": "s", "scope": "kv:read", **params}
        url = md["authorization_endpoint"] + "?" + urllib.parse.urlencode(query)
        response = browser.http.get(url, allow_redirects=False, timeout=TIMEOUT)
        location = response.headers.get("location", "")
        if response.is_redirect and location.startswith(redirect_uri):
            got = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
            check("code" not in got and got.get("error") == "invalid_request",
                  f"PKCE {params or 'absent'}: redirected with {got}")
        else:
            check(400 <= response.status_code < 500, f"PKCE {params or 'absent'}: {response.status_code}")
    log("pkce: missing and plain code challenges refused")

    # A code used after its lifetime: refused.
    if args.code_ttl:
        verifier = generate_token(48)
        location, code = authorize(verifier)
        time.sleep(args.code_ttl + 1.5)
        late = raw_token_request(md, grant_type="authorization_code", code=code, code_verifier=verifier,
                                 redirect_uri=redirect_uri, client_id=args.client_id)
        check(late.status_code == 400 and late.json()["error"] == "invalid_grant",
              f"code after expiry: {late.status_code} {late.text}")
        log(f"pkce: code used {args.code_ttl + 1.5} s after issue (lifetime {args.code_ttl} s) refused")
    print(json.dumps({"ok": "pkce"}))


def cmd_attacks(args):
    md = metadata(args.base)
    session = public_session("p8fs-cli")
    grant = device_authorization(session, md)
    attacker = Browser(args.base)
    attacker.sign_in(args.username, args.password)
    statuses = []
    limited = False
    for attempt in range(12):
        guess = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
        guess = guess[:4] + "-" + guess[4:]
        if guess == grant["user_code"]:
            continue
        page = attacker.http.get(args.base + "/device", timeout=TIMEOUT)
        response = attacker.enter_code(page, guess)
        statuses.append(response.status_code)
        check("approve" not in parse(response.text).ids, f"a guessed code {guess} reached the approval page")
        if response.status_code == 429 or re.search(r"too many|try again later", error_text(response), re.I):
            limited = True
            break
    check(limited, f"12 wrong user codes were never rate limited (statuses {statuses})")
    log(f"attacks: wrong user codes rate limited after {len(statuses) - 1} guesses")
    # Once limited, even the right code is refused in that session...
    page = attacker.http.get(args.base + "/device", timeout=TIMEOUT)
    if attacker.form_with(page, "user_code") is not None:
        response = attacker.enter_code(page, grant["user_code"])
        check("approve" not in parse(response.text).ids,
              "a rate-limited session still reached the approval page with the right code")
    # ...while the person the code belongs to, in another session, can still approve it.
    result = Browser(args.base).device(grant["verification_uri_complete"], args.username, args.password)
    token = poll_device(session, md, grant)
    check(rest_status(args.base, token["access_token"]) == 200, "token after approval does not work")
    log(f"attacks: a fresh session still approved the real code ({result})")

    # Codes entered lower case and without the dash are the same code.
    grant = device_authorization(session, md)
    sloppy = grant["user_code"].replace("-", "").lower()
    Browser(args.base).device(grant["verification_uri"], args.username, args.password, sloppy)
    poll_device(session, md, grant)
    log("attacks: user code accepted case-insensitively without the dash")

    # Wrong password: the sign-in page says so, and no session results.
    browser = Browser(args.base)
    page = browser.http.get(args.base + "/oauth/signin", timeout=TIMEOUT)
    form = browser.form_with(page, "username")
    after = browser.submit(page, form, {"username": args.username, "password": args.password + "x"})
    check("error" in parse(after.text).ids, "a wrong password did not show an error")
    # A form posted without its csrf field is refused.
    forged = browser.http.post(args.base + "/oauth/signin",
                               data={"username": args.username, "password": args.password},
                               allow_redirects=False, timeout=TIMEOUT)
    check(forged.status_code >= 400, f"sign-in without csrf: {forged.status_code}")
    log("attacks: wrong password and missing csrf refused")
    print(json.dumps({"ok": "attacks"}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("device", "pkce", "attacks", "approve-device"):
        p = sub.add_parser(name)
        p.add_argument("--base", required=True)
        p.add_argument("--username", required=True)
        p.add_argument("--password", required=True)
        p.add_argument("--audience", default="p8fs")
        if name == "pkce":
            p.add_argument("--client-id", required=True)
            p.add_argument("--redirect-uri", required=True)
            p.add_argument("--code-ttl", type=float, default=0)
        if name == "approve-device":
            p.add_argument("--url", required=True)
            p.add_argument("--code")
            p.add_argument("--decision", default="approve", choices=["approve", "deny"])
    args = parser.parse_args()
    args.base = args.base.rstrip("/")
    {"device": cmd_device, "pkce": cmd_pkce, "attacks": cmd_attacks,
     "approve-device": cmd_approve_device}[args.command](args)


if __name__ == "__main__":
    main()
