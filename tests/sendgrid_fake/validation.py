"""mail/send bodies checked as SendGrid checks them, answered with SendGrid's error objects.

Every limit comes from limits.py, which says where SendGrid documents it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sendgrid_fake.limits import (
    EMAIL_RE,
    MAX_CATEGORIES,
    MAX_CATEGORY_LEN,
    MAX_CUSTOM_ARGS_BYTES,
    MAX_GROUPS_TO_DISPLAY,
    MAX_PERSONALIZATIONS,
    MAX_RECIPIENTS,
    MAX_SEND_AT_AHEAD,
    MAX_SUBSTITUTIONS_BYTES,
    RESERVED_HEADERS,
)


def error_object(message: str, field_: str | None) -> dict[str, Any]:
    return {"message": message, "field": field_, "help": None}


def json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def is_int(value: Any) -> bool:
    # JSON true/false parse to bool, a subclass of int: SendGrid would reject them.
    return isinstance(value, int) and not isinstance(value, bool)


def valid_email(address: Any) -> bool:
    """A cheap syntax check, close to SendGrid's 'Does not contain a valid address'."""
    return isinstance(address, str) and len(address) <= 320 and bool(EMAIL_RE.match(address))


def validate_mail(
    body: Any,
    *,
    now: float,
    batch_known: Callable[[str], bool],
    max_send_at_past: float = MAX_SEND_AT_AHEAD,
) -> list[dict[str, Any]]:
    """Return SendGrid-style error objects for a mail/send body ([] when it is valid)."""
    errors: list[dict[str, Any]] = []
    err = lambda message, fld: errors.append(error_object(message, fld))  # noqa: E731

    if not isinstance(body, dict):
        return [error_object("The request body must be a JSON object.", None)]
    template_id = body.get("template_id")
    if template_id is not None and not isinstance(template_id, str):
        err("The template_id must be a string.", "template_id")
    dynamic = isinstance(template_id, str) and template_id.startswith("d-")

    def check_address(obj: Any, fld: str, what: str) -> None:
        if not isinstance(obj, dict) or "email" not in obj:
            err(f"The {what} must be an object with an email parameter.", fld)
            return
        if not valid_email(obj.get("email")):
            err("Does not contain a valid address.", f"{fld}.email")
        if "name" in obj and obj["name"] is not None and not isinstance(obj["name"], str):
            err(f"The {what} name must be a string.", f"{fld}.name")

    def check_string_map(obj: Any, fld: str, what: str) -> bool:
        if not isinstance(obj, dict):
            err(f"The {what} must be an object.", fld)
            return False
        bad = [k for k, v in obj.items() if not isinstance(v, str)]
        if bad:
            err(f"The {what} values must be strings (not {bad[0]!r}).", f"{fld}.{bad[0]}")
            return False
        return True

    def check_headers(obj: Any, fld: str) -> None:
        if not check_string_map(obj, fld, "headers"):
            return
        for name in obj:
            if name.lower() in RESERVED_HEADERS:
                err(f"The {name} header is reserved and may not be overridden.", f"{fld}.{name}")

    def check_send_at(value: Any, fld: str) -> None:
        if not is_int(value):
            err("The send_at parameter must be a UNIX timestamp (integer).", fld)
        elif value > now + MAX_SEND_AT_AHEAD:
            err("The send_at parameter cannot be more than 72 hours in the future.", fld)
        elif value < now - max_send_at_past:
            err("The send_at parameter is too far in the past.", fld)

    # from / reply_to
    if "from" not in body:
        err(
            "The from object must be provided for every email send. It is an object that requires"
            " the email parameter, but may also contain a name parameter.",
            "from.email",
        )
    else:
        check_address(body["from"], "from", "from object")
    if "reply_to" in body:
        check_address(body["reply_to"], "reply_to", "reply_to object")
    if "reply_to_list" in body:
        rtl = body["reply_to_list"]
        if "reply_to" in body:
            err("You may not use both reply_to and reply_to_list.", "reply_to_list")
        if not isinstance(rtl, list) or len(rtl) > 1000:
            err("The reply_to_list must be an array of at most 1000 items.", "reply_to_list")
        else:
            for i, obj in enumerate(rtl):
                check_address(obj, f"reply_to_list.{i}", "reply_to_list item")

    # personalizations
    pers = body.get("personalizations")
    if not isinstance(pers, list) or not pers:
        err(
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
        )
        pers = []
    elif len(pers) > MAX_PERSONALIZATIONS:
        err(
            f"The personalizations field may not have more than {MAX_PERSONALIZATIONS} items.",
            "personalizations",
        )
    top_custom = body.get("custom_args")
    top_custom_ok = "custom_args" not in body or check_string_map(top_custom, "custom_args", "custom_args")
    if top_custom_ok and top_custom is not None and json_size(top_custom) > MAX_CUSTOM_ARGS_BYTES:
        err(f"The custom_args may not exceed {MAX_CUSTOM_ARGS_BYTES} bytes.", "custom_args")

    seen: dict[str, str] = {}  # lower-cased address -> where it first appeared
    recipients = 0
    every_p_has_subject = bool(pers)
    for i, p in enumerate(pers):
        pf = f"personalizations.{i}"
        if not isinstance(p, dict):
            err("Each personalization must be an object.", pf)
            every_p_has_subject = False
            continue
        to = p.get("to")
        if not isinstance(to, list) or not to:
            err(
                "The to array is required for all personalization objects, and must have at least"
                " one email object with a valid email address.",
                f"{pf}.to",
            )
        for kind in ("to", "cc", "bcc"):
            addrs = p.get(kind)
            if addrs is None:
                continue
            if not isinstance(addrs, list):
                err(f"The {kind} field must be an array.", f"{pf}.{kind}")
                continue
            for j, addr in enumerate(addrs):
                check_address(addr, f"{pf}.{kind}.{j}", f"{kind} object")
                recipients += 1
                email = addr.get("email") if isinstance(addr, dict) else None
                if isinstance(email, str):
                    key = email.lower()
                    if key in seen:
                        err(
                            "Each email address in the personalization block should be unique"
                            " between to, cc, and bcc. We found the first duplicate instance of"
                            f" [{email}] in the {pf}.{kind} field.",
                            f"{pf}.{kind}",
                        )
                    else:
                        seen[key] = f"{pf}.{kind}"
        if "from" in p:
            check_address(p["from"], f"{pf}.from", "from object")
        if "subject" in p:
            if not isinstance(p["subject"], str) or not p["subject"]:
                err("The subject must be a string at least one character long.", f"{pf}.subject")
        else:
            every_p_has_subject = False
        if "headers" in p:
            check_headers(p["headers"], f"{pf}.headers")
        if "substitutions" in p:
            subs = p["substitutions"]
            if dynamic:
                err("Substitutions may not be used with dynamic templating.", f"{pf}.substitutions")
            if check_string_map(subs, f"{pf}.substitutions", "substitutions"):
                if json_size(subs) > MAX_SUBSTITUTIONS_BYTES:
                    err(
                        f"The substitutions may not exceed {MAX_SUBSTITUTIONS_BYTES} bytes per personalization.",
                        f"{pf}.substitutions",
                    )
        if "custom_args" in p and check_string_map(p["custom_args"], f"{pf}.custom_args", "custom_args"):
            # The limit is on what travels with each email: top-level merged with this one.
            merged = {**(top_custom if top_custom_ok and top_custom else {}), **p["custom_args"]}
            if json_size(merged) > MAX_CUSTOM_ARGS_BYTES:
                err(
                    f"The custom_args may not exceed {MAX_CUSTOM_ARGS_BYTES} bytes.",
                    f"{pf}.custom_args",
                )
        if "dynamic_template_data" in p and not isinstance(p["dynamic_template_data"], dict):
            err("The dynamic_template_data must be an object.", f"{pf}.dynamic_template_data")
        if "send_at" in p:
            check_send_at(p["send_at"], f"{pf}.send_at")
    if recipients > MAX_RECIPIENTS:
        err(
            f"The total number of recipients (to, cc and bcc) may not exceed {MAX_RECIPIENTS}.",
            "personalizations",
        )

    # subject
    if "subject" in body:
        if not isinstance(body["subject"], str) or not body["subject"]:
            err("The subject must be a string at least one character long.", "subject")
    elif not template_id and not every_p_has_subject:
        err(
            "The subject is required. You can get around this requirement if you use a template"
            " with a subject defined or if every personalization has a subject defined.",
            "subject",
        )

    # content
    if "content" in body:
        content = body["content"]
        if not isinstance(content, list) or not content:
            err("The content must be an array with at least one content block.", "content")
        else:
            types: list[str] = []
            for i, block in enumerate(content):
                if not isinstance(block, dict):
                    err("Each content block must be an object.", f"content.{i}")
                    continue
                ctype, value = block.get("type"), block.get("value")
                if not isinstance(ctype, str) or not ctype:
                    err(
                        "The content type must be a string at least one character long.",
                        f"content.{i}.type",
                    )
                    continue
                if not isinstance(value, str) or not value:
                    err(
                        "The content value must be a string at least one character in length.",
                        f"content.{i}.value",
                    )
                if ctype.lower() in types:
                    err(f"The content type {ctype} may only be used once.", f"content.{i}.type")
                types.append(ctype.lower())
            order_msg = (
                "If present, text/plain content must be first, followed by text/html, followed by any other content."
            )
            if "text/plain" in types and types.index("text/plain") != 0:
                err(order_msg, "content")
            elif "text/html" in types and any(
                t not in ("text/plain", "text/html") for t in types[: types.index("text/html")]
            ):
                err(order_msg, "content")
    elif not template_id:
        err(
            "Unless a valid template_id is provided, the content parameter is required. There must"
            " be at least one defined content block. We typically suggest both text/plain and"
            " text/html blocks are included, but only one block is required.",
            "content",
        )

    # categories
    if "categories" in body:
        cats = body["categories"]
        if not isinstance(cats, list):
            err("The categories must be an array of strings.", "categories")
        else:
            if len(cats) > MAX_CATEGORIES:
                err(
                    f"You may not have more than {MAX_CATEGORIES} categories per request.",
                    "categories",
                )
            for i, cat in enumerate(cats):
                if not isinstance(cat, str):
                    err("A category must be a string.", f"categories.{i}")
                elif len(cat) > MAX_CATEGORY_LEN:
                    err(
                        f"A category cannot be longer than {MAX_CATEGORY_LEN} characters.",
                        f"categories.{i}",
                    )
                elif cats.index(cat) != i:
                    err(
                        f"The category {cat!r} is duplicated; categories must be unique.",
                        f"categories.{i}",
                    )

    if "headers" in body:
        check_headers(body["headers"], "headers")
    if "send_at" in body:
        check_send_at(body["send_at"], "send_at")
    if "batch_id" in body:
        bid = body["batch_id"]
        if not isinstance(bid, str) or not batch_known(bid):
            err("The batch id is not valid.", "batch_id")

    if "asm" in body:
        asm = body["asm"]
        if not isinstance(asm, dict) or not is_int(asm.get("group_id")):
            err("The asm object requires an integer group_id.", "asm.group_id")
        elif "groups_to_display" in asm:
            groups = asm["groups_to_display"]
            if not isinstance(groups, list) or not all(is_int(g) for g in groups):
                err("The groups_to_display must be an array of integers.", "asm.groups_to_display")
            elif len(groups) > MAX_GROUPS_TO_DISPLAY:
                err(
                    f"The groups_to_display may not have more than {MAX_GROUPS_TO_DISPLAY} items.",
                    "asm.groups_to_display",
                )

    if "ip_pool_name" in body:
        pool = body["ip_pool_name"]
        if not isinstance(pool, str) or not 2 <= len(pool) <= 64:
            err("The ip_pool_name must be a string of 2 to 64 characters.", "ip_pool_name")

    if "attachments" in body:
        atts = body["attachments"]
        if not isinstance(atts, list):
            err("The attachments must be an array.", "attachments")
        else:
            for i, att in enumerate(atts):
                af = f"attachments.{i}"
                if not isinstance(att, dict):
                    err("Each attachment must be an object.", af)
                    continue
                if not isinstance(att.get("content"), str) or not att["content"]:
                    err("The attachment content must be a Base64 encoded string.", f"{af}.content")
                if not isinstance(att.get("filename"), str) or not att["filename"]:
                    err("The attachment filename is required.", f"{af}.filename")
                if "disposition" in att and att["disposition"] not in ("inline", "attachment"):
                    err("The disposition must be inline or attachment.", f"{af}.disposition")

    # Settings: every `enable` must be a real JSON boolean ("true" as a string is a classic bug).
    for group in ("mail_settings", "tracking_settings"):
        if group not in body:
            continue
        settings = body[group]
        if not isinstance(settings, dict):
            err(f"The {group} must be an object.", group)
            continue
        for name, setting in settings.items():
            if not isinstance(setting, dict):
                err(f"The {group}.{name} setting must be an object.", f"{group}.{name}")
            elif "enable" in setting and not isinstance(setting["enable"], bool):
                given = type(setting["enable"]).__name__
                err(f"Invalid type. Expected: boolean, given: {given}.", f"{group}.{name}.enable")
    return errors
