"""Signing in to the console: sign in with tenant, e-mail and password (a session cookie and a
CSRF token), who am I, change my password, sign out (`models.users` holds the rules; the
cookies and the CSRF check are `api.deps`'s).

Every answer to a failed sign-in is the same 401, whatever failed (tenant, address, password,
a disabled account). Failures are counted per account (LOGIN_FAILURES_PER_ACCOUNT in
`api.deps`) and, by the rate limiter, per client address: over either, 429 with Retry-After,
and the password is not even checked. Sign-ins, failed ones too, and sign-outs are in the audit
log (never the password)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Session,
    SignedIn,
    State,
    check_csrf,
    get_signed_in,
    signed_in_session,
)
from api.errors import ApiError
from api.responses import errors
from models import audit, users
from models.repo.tenants import TENANT_ID_RE
from models.users import EMAIL_MAX, PASSWORD_MAX, PASSWORD_MIN, SESSION_MAX, Role

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

SIGN_IN_FAILED = "sign-in failed"
TOO_MANY = "too many failed sign-ins"

Password = Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX)]


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant: str = Field(
        min_length=1, max_length=64, pattern=TENANT_ID_RE.pattern, examples=["demo"]
    )
    email: str = Field(min_length=1, max_length=EMAIL_MAX, examples=["admin@demo.leadflow.local"])
    password: Password


class UserView(BaseModel):
    id: int
    email: str
    name: str
    role: Role
    tenant_id: str

    @classmethod
    def of(cls, user: users.UserInfo) -> UserView:
        return cls(
            id=user.id, email=user.email, name=user.name, role=user.role, tenant_id=user.tenant_id
        )


class SessionView(BaseModel):
    user: UserView
    csrf_token: str = Field(
        description="Send it as `X-CSRF-Token` with every POST/PUT/PATCH/DELETE (it is also in "
        "the `leadflow_csrf` cookie)."
    )


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: Password
    new_password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)


def _set_cookies(request: Request, response: Response, signed: users.SignedIn) -> None:
    # Secure when the request came over https (behind a TLS-terminating proxy, uvicorn takes
    # the client's scheme from the X-Forwarded-Proto of a proxy in FORWARDED_ALLOW_IPS).
    secure = request.url.scheme == "https"
    max_age = int(SESSION_MAX.total_seconds())
    response.set_cookie(
        SESSION_COOKIE,
        signed.token,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )
    # Not HttpOnly: the console's script reads it and repeats it in X-CSRF-Token.
    response.set_cookie(
        CSRF_COOKIE,
        signed.csrf_token,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=False,
        samesite="strict",
    )


def _clear_cookies(request: Request, response: Response) -> None:
    secure = request.url.scheme == "https"
    for name, httponly in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
        response.delete_cookie(name, path="/", secure=secure, httponly=httponly, samesite="strict")


@router.post(
    "/login",
    responses=errors(
        401,
        429,
        _401="Unknown tenant or e-mail address, wrong password, or a disabled account.",
        _429="Too many failed sign-ins for this account or from this address: wait Retry-After.",
    ),
    openapi_extra={"x-audit-action": "auth.login"},
)
async def login(
    body: LoginRequest, request: Request, response: Response, session: Session, state: State
) -> SessionView:
    """Sign in: sets the `leadflow_session` cookie (HttpOnly, SameSite=Strict) and the
    `leadflow_csrf` cookie (the CSRF token, readable by script), and answers the person and the
    CSRF token. A session ends after 12 hours without a request, 7 days after sign-in, or at
    sign-out."""
    account = ("login", body.tenant, body.email.strip().lower())
    limits = state.logins
    refused = limits.exhausted(limits.auth_failures, *account)
    if refused is not None:
        _, wait = refused
        raise ApiError(
            429,
            TOO_MANY,
            f"too many failed sign-ins for this account: try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    signed = await users.sign_in(
        session, tenant_id=body.tenant, email=body.email, password=body.password
    )
    if signed is None:
        limits.hit(limits.auth_failures, *account)
        if await users.tenant_exists(session, tenant_id=body.tenant):
            # Audited in the tenant tried, under the address tried (never the password).
            request.state.tenant_id = body.tenant
            request.state.audit_actor = audit.Actor(kind="user", name=account[2][:200])
        raise ApiError(
            401,
            SIGN_IN_FAILED,
            "unknown tenant or e-mail address, wrong password, or a disabled account",
        )
    request.state.tenant_id = signed.user.tenant_id
    request.state.user = signed.user
    request.state.audit_resource_id = str(signed.user.id)
    _set_cookies(request, response, signed)
    return SessionView(user=UserView.of(signed.user), csrf_token=signed.csrf_token)


@router.get("/me", responses=errors(401, _401="Not signed in (no session, or it has ended)."))
async def me(current: SignedIn) -> SessionView:
    """The signed-in person and the session's CSRF token (the console asks at start-up)."""
    return SessionView(user=UserView.of(current.user), csrf_token=current.csrf_token)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(403, _403="Signed in, but without the session's X-CSRF-Token."),
    openapi_extra={"x-audit-action": "auth.logout"},
)
async def logout(request: Request, session: Session) -> Response:
    """Sign out: the session ends and both cookies are cleared. Without a live session there
    is nothing to end, and the answer is the same 204."""
    current = await signed_in_session(request, session)
    if current is not None:
        check_csrf(request, current)
        request.state.tenant_id = current.tenant.id
        request.state.user = current.user
        request.state.audit_resource_id = str(current.user.id)
        await users.sign_out(session, token=request.cookies.get(SESSION_COOKIE, ""))
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    _clear_cookies(request, response)
    return response


@router.post(
    "/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors(
        401, 403, _401="Not signed in.", _403="Signed in, but without the X-CSRF-Token."
    ),
    openapi_extra={"x-audit-action": "auth.password"},
)
async def change_password(body: PasswordChange, request: Request, session: Session) -> Response:
    """Change your own password (any role). The current one must be given; your other
    sessions end, this one stays."""
    # Asked here rather than as a dependency: a malformed body is a 415/422 before anything,
    # as on every other JSON route.
    current = await get_signed_in(request, session)
    request.state.audit_resource_id = str(current.user.id)
    try:
        await users.change_own_password(
            session,
            current=current,
            old_password=body.current_password,
            new_password=body.new_password,
        )
    except users.InvalidUserInput as exc:
        raise ApiError(422, "invalid password", str(exc)) from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)
