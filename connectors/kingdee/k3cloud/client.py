"""K/3 Cloud (云星空) WebAPI client over ``requests`` (ERP-APIS §3).

Transport only: it speaks the wire format, classifies every failure through
:mod:`connectors.kingdee.k3cloud.errors` and returns the typed records of
:mod:`connectors.kingdee.k3cloud.records`. It never touches the hub's store.

Behaviour worth knowing:

* Session modes (``password``, ``app_secret``, ``sign``) log in lazily, send the session id as the
  ``kdservice-sessionid`` cookie *and* header, and on ``MsgCode 1`` (session lost: idle timeout, IIS
  recycle, login elsewhere) log in again once and repeat the call once. The server rejects such a call
  before doing anything, so repeating a write is safe.
* ``signed_headers`` mode has no session: every call carries freshly signed ``X-Api-*``/``X-Kd-*`` headers.
* ``MsgCode 14`` and HTTP 429/5xx back off through the one retry builder (:mod:`connectors.retry`).
* A write whose reply is lost (timeout, reset, 5xx after sending) raises
  :class:`~hub.errors.UnknownOutcomeError`; :meth:`K3CloudClient.save_bill` and
  :meth:`K3CloudClient.batch_save` resolve it by looking the bill number up before re-sending.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import requests

from connectors.retry import build_retrying
from hub.errors import (
    ConfigError,
    DataValidationError,
    HubError,
    PermanentError,
    UnknownOutcomeError,
)
from hub.secrets import register_secret

from . import errors as k3errors
from .parsing import as_int, ci_get, dumps, find_response_status, is_login_reply, loads, parse_status
from .query import BillQuerySpec, eq, in_
from .records import (
    BatchSaveResult,
    BillRef,
    ConnectionCheck,
    LoginResult,
    OperationResult,
    ResponseStatus,
    RowError,
    SavedBill,
    SuccessEntity,
)
from .settings import K3CloudSettings
from .signing import k3_signed_headers, login_sign

log = logging.getLogger(__name__)

SERVICE_PREFIX = "Kingdee.BOS.WebApi.ServicesStub."
SESSION_COOKIE = "kdservice-sessionid"
_WRITE_SERVICES = frozenset({"Save", "BatchSave", "Draft", "Submit", "Audit", "UnAudit", "Delete", "Push"})
# MsgCodes that describe individual packages of a BatchSave rather than the whole call.
_ROW_LEVEL_CODES = frozenset({0, 9, 10, 11, 12})
_SESSION_LOST = 1
_NOT_FOUND_MARKERS = ("不存在", "not exist", "not found")


class K3CloudClient:
    """One connection to a K/3 Cloud data centre.

    Args:
        settings: the connection (see :class:`K3CloudSettings`).
        session: an optional ``requests.Session`` (a new one is made otherwise).
        clock: epoch seconds, for signatures (tests may skew it).
        sleep: used between retries (defaults to ``time.sleep``).
    """

    def __init__(
        self,
        settings: K3CloudSettings,
        session: requests.Session | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        for secret in (settings.password, settings.app_secret):
            register_secret(secret)
        self._http = session or requests.Session()
        self._verify: bool | str = settings.ca_bundle or True
        self._clock = clock
        self._sleep = sleep
        self._sid: str | None = None
        self._login_lock = threading.Lock()
        self._retrying = build_retrying(settings.retry, sleep=sleep)

    # ------------------------------------------------------------------ transport

    def _url(self, service: str) -> str:
        return f"{self.settings.base_url}{SERVICE_PREFIX}{service}.common.kdsvc"

    def _post(self, service: str, body: dict[str, Any], *, form_id: str | None, sid: str | None) -> Any:
        """One HTTP exchange; returns the decoded JSON or raises a classified error."""
        url = self._url(service)
        write = service.split(".")[-1] in _WRITE_SERVICES
        headers = {"Content-Type": "application/json;charset=utf-8", "Accept": "application/json"}
        if self.settings.auth_mode == "signed_headers":
            headers.update(
                k3_signed_headers(
                    url=url,
                    app_id=self.settings.app_id,
                    app_secret=self.settings.app_secret,
                    acct_id=self.settings.acct_id,
                    username=self.settings.username,
                    lcid=self.settings.lcid,
                    org_number=self.settings.org_number,
                    timestamp=int(self._clock()),
                )
            )
        elif sid:
            headers[SESSION_COOKIE] = sid
            headers["Cookie"] = f"{SESSION_COOKIE}={sid}"
        where: dict[str, Any] = {"connection": self.settings.name, "service": service, "form_id": form_id}
        try:
            response = self._http.post(
                url,
                data=dumps(body).encode("utf-8"),
                headers=headers,
                timeout=(self.settings.connect_timeout, self.settings.read_timeout),
                verify=self._verify,
            )
        except requests.exceptions.RequestException as exc:
            raise k3errors.error_for_exception(exc, write=write, **where) from None
        text = response.content.decode("utf-8", errors="replace")
        if response.status_code not in (200, 206):
            retry_after = _retry_after(response.headers.get("Retry-After"))
            raise k3errors.error_for_http(
                response.status_code, text, write=write, retry_after=retry_after, **where
            )
        stripped = text.lstrip("\ufeff \r\n\t")
        if stripped.startswith("response_error:"):
            raise k3errors.error_for_body("response_error", stripped, write=write, **where)
        try:
            return loads(stripped)
        except ValueError:
            raise k3errors.error_for_body("not_json", stripped, write=write, **where) from None

    def _invoke(self, service: str, body: dict[str, Any], form_id: str | None) -> Any:
        """Call once, logging in first if needed; on ``MsgCode 1`` re-authenticate once and repeat."""
        for attempt in (1, 2):
            sid = self._ensure_session()
            payload = self._post(service, body, form_id=form_id, sid=sid)
            raw_status = None if is_login_reply(payload) else find_response_status(payload)
            if raw_status is None:
                return payload
            status = parse_status(raw_status)
            if status.is_success or status.msg_code != _SESSION_LOST or attempt == 2:
                return payload
            log.info(
                "K/3 Cloud connection %r: %s answered MsgCode 1 (%s); authenticating again once",
                self.settings.name,
                service,
                status.summary(),
            )
            self._drop_session(sid)
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, service: str, body: dict[str, Any], form_id: str | None = None) -> Any:
        """:meth:`_invoke` under the retry policy (transient errors and MsgCode 14 back off)."""

        def once() -> Any:
            payload = self._invoke(service, body, form_id)
            raw_status = find_response_status(payload)
            if raw_status is not None:
                status = parse_status(raw_status)
                if not status.is_success and status.msg_code in (4, 6, 13, 14):
                    raise k3errors.error_for_status(
                        status, connection=self.settings.name, service=service, form_id=form_id
                    )
            return payload

        return self._retrying(once)

    def _status_or_raise(self, payload: Any, service: str, form_id: str | None) -> ResponseStatus:
        raw_status = find_response_status(payload)
        if raw_status is None:
            raise PermanentError(
                f"K/3 Cloud connection {self.settings.name!r}: {service} {form_id or ''} returned no "
                "ResponseStatus; is base_url a K/3 Cloud WebAPI?"
            )
        return parse_status(raw_status)

    def _operation(self, service: str, form_id: str, data: dict[str, Any]) -> OperationResult:
        payload = self._call(f"DynamicFormService.{service}", {"formid": form_id, "data": data}, form_id)
        status = self._status_or_raise(payload, service, form_id)
        if not status.is_success:
            raise k3errors.error_for_status(
                status, connection=self.settings.name, service=service, form_id=form_id
            )
        result = ci_get(payload, "Result") if isinstance(payload, dict) else None
        result = result if isinstance(result, dict) else {}
        number = ci_get(result, "Number")
        need = ci_get(result, "NeedReturnData")
        return OperationResult(
            status=status,
            id=as_int(ci_get(result, "Id"), None),
            number=str(number) if number not in (None, "") else None,
            need_return_data=tuple(d for d in need if isinstance(d, dict)) if isinstance(need, list) else (),
            raw=payload if isinstance(payload, dict) else {},
        )

    # ------------------------------------------------------------------ sessions

    def _ensure_session(self) -> str | None:
        if self.settings.auth_mode == "signed_headers":
            return None
        if self._sid is None:
            with self._login_lock:
                if self._sid is None:
                    self._sid = self.login().session_id
        return self._sid

    def _drop_session(self, sid: str | None) -> None:
        with self._login_lock:
            if self._sid == sid:  # another thread may already have logged in again
                self._sid = None

    def login(self) -> LoginResult:
        """Log in with the configured ``auth_mode`` and return the new session (not for signed headers)."""
        mode = self.settings.auth_mode
        if mode == "password":
            return self.validate_user()
        if mode == "app_secret":
            return self.login_by_app_secret()
        if mode == "sign":
            return self.login_by_sign()
        raise ConfigError(f"K/3 Cloud connection {self.settings.name!r}: signed_headers mode has no login.")

    def validate_user(self) -> LoginResult:
        """``AuthService.ValidateUser`` with username and password."""
        s = self.settings
        body = {"acctID": s.acct_id, "username": s.username, "password": s.password, "lcid": s.lcid}
        return self._login("AuthService.ValidateUser", body)

    def login_by_app_secret(self) -> LoginResult:
        """``AuthService.LoginByAppSecret`` as the integration user of a registered app."""
        s = self.settings
        return self._login(
            "AuthService.LoginByAppSecret",
            {"parameters": [s.acct_id, s.username, s.app_id, s.app_secret, s.lcid]},
        )

    def login_by_sign(self) -> LoginResult:
        """``AuthService.LoginBySign``: the secret never travels, only a timestamped SHA-256 sign."""
        s = self.settings
        ts = int(self._clock())
        sign = login_sign(s.acct_id, s.username, s.app_id, s.app_secret, ts)
        return self._login(
            "AuthService.LoginBySign", {"parameters": [s.acct_id, s.username, s.app_id, ts, sign, s.lcid]}
        )

    def _login(self, service: str, body: dict[str, Any]) -> LoginResult:
        payload = self._retrying(self._post, service, body, form_id=None, sid=None)
        if not isinstance(payload, dict) or not is_login_reply(payload):
            raise PermanentError(
                f"K/3 Cloud connection {self.settings.name!r}: {service} did not return a login result; "
                "check base_url."
            )
        if as_int(ci_get(payload, "LoginResultType"), 0) != 1:
            raise k3errors.error_for_login(
                str(ci_get(payload, "Message") or ""),
                connection=self.settings.name,
                service=service,
                acct_id=self.settings.acct_id,
                username=self.settings.username,
            )
        context = ci_get(payload, "Context") or {}
        sid = ci_get(payload, "KDSVCSessionId") or (
            context.get("SessionId") if isinstance(context, dict) else None
        )
        if not sid:
            sid = self._http.cookies.get(SESSION_COOKIE)
        if not sid:
            raise PermanentError(
                f"K/3 Cloud connection {self.settings.name!r}: {service} succeeded but returned no "
                "session id."
            )
        register_secret(str(sid))
        self._http.cookies.clear()  # the session id is sent explicitly; avoid a stale duplicate cookie
        context = context if isinstance(context, dict) else {}
        return LoginResult(
            session_id=str(sid),
            user_id=as_int(context.get("UserId"), None),
            user_name=context.get("UserName"),
            context=context,
        )

    def logout(self) -> None:
        """End the current session (best effort; a lost session is already gone)."""
        sid = self._sid
        if sid is None:
            return
        try:
            self._post("AuthService.Logout", {}, form_id=None, sid=sid)
        except HubError as exc:
            log.info("K/3 Cloud connection %r: logout failed (%s); ignoring", self.settings.name, exc)
        self._drop_session(sid)

    # ------------------------------------------------------------------ writes

    def save(self, form_id: str, model: dict[str, Any], **options: Any) -> OperationResult:
        """``Save`` one bill; raises the classified error when the ERP refuses it.

        ``options`` are the other Save parameters (``NeedReturnFields``, ``IsAutoSubmitAndAudit``,
        ``InterationFlags`` ...). A lost reply raises :class:`UnknownOutcomeError`; prefer
        :meth:`save_bill` for exactly-once.
        """
        return self._operation("Save", form_id, {**options, "Model": model})

    def draft(self, form_id: str, model: dict[str, Any], **options: Any) -> OperationResult:
        """``Draft``: save without validation (document status Z)."""
        return self._operation("Draft", form_id, {**options, "Model": model})

    def batch_save(
        self, form_id: str, models: Sequence[dict[str, Any]], *, batch_size: int | None = None, **options: Any
    ) -> BatchSaveResult:
        """``BatchSave`` in chunks of ``batch_size``; failures are reported per input index, not raised.

        K/3 Cloud commits each package separately, so a chunk may partly succeed. When a chunk's reply
        is lost and every model carries ``FBillNo``, the numbers are looked up and only the missing
        ones are sent again (never a second bill).
        """
        size = batch_size or self.settings.batch_size
        saved: dict[int, SuccessEntity] = {}
        failed: dict[int, HubError] = {}
        for start in range(0, len(models), size):
            indexes = list(range(start, min(start + size, len(models))))
            self._batch_chunk(form_id, models, indexes, options, saved, failed)
        return BatchSaveResult(saved=saved, failed=failed)

    def _batch_chunk(
        self,
        form_id: str,
        models: Sequence[dict[str, Any]],
        indexes: list[int],
        options: dict[str, Any],
        saved: dict[int, SuccessEntity],
        failed: dict[int, HubError],
    ) -> None:
        pending = list(indexes)
        for attempt in range(1, self.settings.retry.max_attempts + 1):
            try:
                payload = self._call(
                    "DynamicFormService.BatchSave",
                    {"formid": form_id, "data": {**options, "Model": [models[i] for i in pending]}},
                    form_id,
                )
            except UnknownOutcomeError:
                numbers = {i: _bill_no(models[i]) for i in pending}
                if any(n is None for n in numbers.values()) or attempt == self.settings.retry.max_attempts:
                    raise
                found = self.find_bills(form_id, [n for n in numbers.values() if n])
                for i, number in numbers.items():
                    if number in found:
                        saved[i] = SuccessEntity(found[number].id, number, i)
                pending = [i for i in pending if numbers[i] not in found]
                log.warning(
                    "K/3 Cloud connection %r: BatchSave %s reply lost; %d of the chunk found by number, "
                    "re-sending %d",
                    self.settings.name,
                    form_id,
                    len(numbers) - len(pending),
                    len(pending),
                )
                if not pending:
                    return
                continue
            self._collect_batch(payload, form_id, pending, saved, failed)
            return

    def _collect_batch(
        self,
        payload: Any,
        form_id: str,
        sent: list[int],
        saved: dict[int, SuccessEntity],
        failed: dict[int, HubError],
    ) -> None:
        status = self._status_or_raise(payload, "BatchSave", form_id)
        if not status.is_success and (status.msg_code not in _ROW_LEVEL_CODES or not status.errors):
            raise k3errors.error_for_status(
                status, connection=self.settings.name, service="BatchSave", form_id=form_id
            )
        for entity in status.success_entities:
            if 0 <= entity.dindex < len(sent):
                index = sent[entity.dindex]
                saved[index] = replace(entity, dindex=index)
        by_package: dict[int, list[RowError]] = {}
        for error in status.errors:
            by_package.setdefault(error.dindex, []).append(error)
        for dindex, row_errors in by_package.items():
            if 0 <= dindex < len(sent):
                package_status = replace(status, errors=tuple(row_errors), success_entities=())
                failed[sent[dindex]] = k3errors.error_for_status(
                    package_status,
                    connection=self.settings.name,
                    service=f"BatchSave package {sent[dindex]}",
                    form_id=form_id,
                )
        for position, index in enumerate(sent):
            if index not in saved and index not in failed:
                failed[index] = PermanentError(
                    f"K/3 Cloud connection {self.settings.name!r}: BatchSave {form_id} reported no outcome "
                    f"for package {index} (DIndex {position}); look it up before re-sending."
                )

    def save_bill(
        self,
        form_id: str,
        model: dict[str, Any],
        bill_no: str,
        *,
        number_field: str = "FBillNo",
        **options: Any,
    ) -> SavedBill:
        """Save a bill exactly once, keyed by its deterministic number ``bill_no``.

        After an unknown outcome (timeout, reset, error page after sending) the bill is looked up by
        number before anything is re-sent; if it is there, that is the result. A refusal is also
        checked against the number, so a bill saved by an earlier run is reported, not duplicated.
        Base data (``BD_*``) is keyed by ``number_field="FNumber"``.
        """
        model = dict(model)
        for key in list(model):
            if key.lower() == number_field.lower():
                if model[key] not in (None, "", bill_no):
                    raise DataValidationError(
                        f"K/3 Cloud connection {self.settings.name!r}: {form_id} model has {number_field} "
                        f"{model[key]!r} but save_bill was asked for {bill_no!r}; they must agree."
                    )
                del model[key]
        model[number_field] = bill_no
        attempts = 0
        uncertain = False

        def attempt() -> SavedBill:
            nonlocal attempts, uncertain
            attempts += 1
            if uncertain:
                found = self.find_bill(form_id, bill_no, number_field=number_field)
                if found is not None:
                    log.info(
                        "K/3 Cloud connection %r: %s %s was saved although its reply was lost; not re-sent",
                        self.settings.name,
                        form_id,
                        bill_no,
                    )
                    return SavedBill(form_id, found.id, found.number, created=False, attempts=attempts)
            try:
                result = self.save(form_id, model, **options)
            except UnknownOutcomeError:
                uncertain = True
                raise
            except PermanentError:
                found = self.find_bill(form_id, bill_no, number_field=number_field)
                if found is not None:
                    return SavedBill(form_id, found.id, found.number, created=False, attempts=attempts)
                raise
            return SavedBill(
                form_id, result.id or 0, result.number or bill_no, created=True, attempts=attempts
            )

        retrying = build_retrying(replace(self.settings.retry, retry_unknown_outcome=True), sleep=self._sleep)
        try:
            return retrying(attempt)
        except UnknownOutcomeError:
            found = self.find_bill(form_id, bill_no, number_field=number_field)
            if found is not None:
                return SavedBill(form_id, found.id, found.number, created=False, attempts=attempts)
            raise

    def _state_op(
        self,
        service: str,
        form_id: str,
        numbers: Sequence[str] | None,
        ids: Sequence[int] | None,
        options: dict[str, Any],
    ) -> OperationResult:
        if not numbers and not ids:
            raise DataValidationError(
                f"K/3 Cloud connection {self.settings.name!r}: {service} {form_id} needs numbers or ids."
            )
        data = {
            "CreateOrgId": 0,
            "Numbers": list(numbers or []),
            # Ids are a comma-separated *string* on the wire (ERP-APIS §3.6).
            "Ids": ",".join(str(i) for i in ids or []),
            **options,
        }
        return self._operation(service, form_id, data)

    def submit(
        self,
        form_id: str,
        numbers: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
        **options: Any,
    ) -> OperationResult:
        """``Submit`` bills (A/D -> B)."""
        return self._state_op("Submit", form_id, numbers, ids, options)

    def audit(
        self,
        form_id: str,
        numbers: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
        **options: Any,
    ) -> OperationResult:
        """``Audit`` bills (B -> C); pass ``InterationFlags="STK_InvCheckResult"`` to allow negative stock."""
        return self._state_op("Audit", form_id, numbers, ids, options)

    def unaudit(
        self,
        form_id: str,
        numbers: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
        **options: Any,
    ) -> OperationResult:
        """``UnAudit`` bills (C -> D)."""
        return self._state_op("UnAudit", form_id, numbers, ids, options)

    def delete(
        self,
        form_id: str,
        numbers: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
        **options: Any,
    ) -> OperationResult:
        """``Delete`` bills (only Z/A/D)."""
        return self._state_op("Delete", form_id, numbers, ids, options)

    def push(
        self,
        form_id: str,
        *,
        numbers: Sequence[str] | None = None,
        ids: Sequence[int] | None = None,
        target_form_id: str = "",
        rule_id: str = "",
        entry_ids: Sequence[int] | None = None,
        **options: Any,
    ) -> OperationResult:
        """``Push`` (下推) source bills into a target form by ``rule_id`` or the default rule.

        The new target bills are in ``result.status.success_entities`` (with their ``entry_ids``).
        """
        data = {
            "Ids": ",".join(str(i) for i in ids or []),
            "Numbers": list(numbers or []),
            "EntryIds": ",".join(str(i) for i in entry_ids or []),
            "RuleId": rule_id,
            "TargetBillTypeId": "",
            "TargetOrgId": 0,
            "TargetFormId": target_form_id,
            "IsEnableDefaultRule": "false" if rule_id else "true",
            "IsDraftWhenSaveFail": "false",
            "CustomParams": {},
            **options,
        }
        return self._operation("Push", form_id, data)

    # ------------------------------------------------------------------ reads

    def view(
        self, form_id: str, *, number: str | None = None, id: int | None = None
    ) -> dict[str, Any] | None:
        """``View`` one bill as its object model, or ``None`` when it does not exist."""
        data = {
            "CreateOrgId": 0,
            "Number": number or "",
            "Id": "" if id is None else str(id),
            "IsSortBySeq": "false",
        }
        payload = self._call("DynamicFormService.View", {"formid": form_id, "data": data}, form_id)
        status = self._status_or_raise(payload, "View", form_id)
        if not status.is_success:
            if status.msg_code == 10 or any(m in status.summary() for m in _NOT_FOUND_MARKERS):
                return None
            raise k3errors.error_for_status(
                status, connection=self.settings.name, service="View", form_id=form_id
            )
        result = ci_get(payload, "Result")
        bill = ci_get(result, "Result") if isinstance(result, dict) else None
        return bill if isinstance(bill, dict) else None

    def _query(self, service: str, spec: BillQuerySpec) -> list[Any]:
        payload = self._call(f"DynamicFormService.{service}", {"data": spec.to_body()}, spec.form_id)
        raw_status = find_response_status(payload)
        if raw_status is not None:
            # A wrapped error ([[{"Result": ...}]]) must never be mistaken for a data row.
            status = parse_status(raw_status)
            raise k3errors.error_for_status(
                status, connection=self.settings.name, service=service, form_id=spec.form_id
            )
        if not isinstance(payload, list):
            raise PermanentError(
                f"K/3 Cloud connection {self.settings.name!r}: {service} {spec.form_id} returned "
                f"{type(payload).__name__}, not a list of rows."
            )
        return payload

    def execute_bill_query(self, spec: BillQuerySpec) -> list[list[Any]]:
        """``ExecuteBillQuery``: rows as lists in ``field_keys`` order (numbers as Decimal)."""
        return [row for row in self._query("ExecuteBillQuery", spec) if isinstance(row, list)]

    def bill_query(self, spec: BillQuerySpec) -> list[dict[str, Any]]:
        """``BillQuery``: rows as objects keyed by field key."""
        return [row for row in self._query("BillQuery", spec) if isinstance(row, dict)]

    def iter_query(
        self,
        form_id: str,
        field_keys: Sequence[str],
        *,
        filter_string: str = "",
        order_string: str = "FID",
        page_size: int = 2000,
    ) -> Iterator[list[Any]]:
        """All rows, page by page (``StartRow``/``Limit``) until a short page; needs a stable order."""
        if not order_string:
            raise ConfigError(
                f"K/3 Cloud connection {self.settings.name!r}: paging {form_id} needs an order_string, "
                "otherwise rows can repeat or vanish between pages."
            )
        start = 0
        while True:
            spec = BillQuerySpec(form_id, tuple(field_keys), filter_string, order_string, start, page_size)
            rows = self.execute_bill_query(spec)
            yield from rows
            if len(rows) < page_size:
                return
            start += page_size

    def find_bill(self, form_id: str, bill_no: str, *, number_field: str = "FBillNo") -> BillRef | None:
        """The bill with this number, or ``None`` (ExecuteBillQuery on the number field)."""
        return self.find_bills(form_id, [bill_no], number_field=number_field).get(bill_no)

    def find_bills(
        self, form_id: str, bill_nos: Sequence[str], *, number_field: str = "FBillNo"
    ) -> dict[str, BillRef]:
        """Bills by number (first match per number), looked up in pages of 200 numbers."""
        found: dict[str, BillRef] = {}
        wanted = list(dict.fromkeys(bill_nos))
        for start in range(0, len(wanted), 200):
            chunk = wanted[start : start + 200]
            flt = eq(number_field, chunk[0]) if len(chunk) == 1 else in_(number_field, chunk)
            spec = BillQuerySpec(form_id, ("FID", number_field, "FDocumentStatus"), flt, "FID", 0, 0)
            for fid, number, status in self.execute_bill_query(spec):
                found.setdefault(str(number), BillRef(form_id, int(fid), str(number), status))
        return found

    def check(self) -> ConnectionCheck:
        """Log in (session modes) and read one currency row: proves URL, credentials and permissions."""
        if self.settings.auth_mode != "signed_headers":
            self._sid = None
            self._ensure_session()
        rows = self.execute_bill_query(BillQuerySpec("BD_Currency", ("FNumber",), limit=1))
        return ConnectionCheck(self.settings.name, self.settings.auth_mode, self.settings.username, len(rows))


def _bill_no(model: dict[str, Any]) -> str | None:
    for key, value in model.items():
        if key.lower() == "fbillno" and value not in (None, ""):
            return str(value)
    return None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
