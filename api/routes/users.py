"""The tenant's people (admins only, `api.deps.role_refusal`): list, add, change (name, role,
password, disabled), delete. `models.users` holds the rules: e-mail addresses unique per tenant
and lower-cased, passwords of at least 10 characters stored as Argon2id hashes, and never
without an admin who can sign in (409). Another tenant's person is a 404, the same as an id
that does not exist. A password is never in an answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from api.deps import CurrentTenant, Session
from api.errors import ApiError
from api.responses import errors
from models import users
from models.users import EMAIL_MAX, MAX_USER_ID, NAME_MAX, PASSWORD_MAX, PASSWORD_MIN, Role

router = APIRouter(prefix="/api/v1/users", tags=["users"])

UserId = Annotated[int, Path(ge=1, le=MAX_USER_ID, description="The person's id (from the list).")]
Password = Annotated[str, Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)]
NOT_FOUND = errors(404, _404="No such person in this tenant.")
REFUSED = errors(
    409, _409="Refused: the address is taken, or it would leave the tenant without an admin."
)


class UserView(BaseModel):
    id: int
    email: str
    name: str
    role: Role
    tenant_id: str
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None

    @classmethod
    def of(cls, user: users.UserInfo) -> UserView:
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            role=user.role,
            tenant_id=user.tenant_id,
            disabled=user.disabled,
            created_at=user.created_at,
            last_login_at=user.last_login_at,
        )


class UserList(BaseModel):
    users: list[UserView]


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(min_length=3, max_length=EMAIL_MAX, examples=["anna@example.com"])
    name: str = Field(min_length=1, max_length=NAME_MAX, examples=["Anna Berg"])
    role: Role = "operator"
    password: Password


class UserChange(BaseModel):
    """What to change; what is left out stays."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=NAME_MAX)
    role: Role | None = None
    password: Password | None = None
    disabled: StrictBool | None = Field(
        default=None, description="A disabled person cannot sign in; their sessions end."
    )


def _invalid(exc: users.InvalidUserInput) -> ApiError:
    return ApiError(422, "invalid request", str(exc))


def _not_found(user_id: int) -> ApiError:
    # The same words for another tenant's person as for one that does not exist.
    return ApiError(404, "no such person", f"no person {user_id} in this tenant")


def _current_session_id(request: Request) -> str | None:
    current = getattr(request.state, "user_session", None)
    return current.session_id if isinstance(current, users.CurrentSession) else None


@router.get("")
async def list_users(tenant: CurrentTenant, session: Session) -> UserList:
    """The tenant's people, oldest first."""
    found = await users.list_users(session, tenant_id=tenant.id)
    return UserList(users=[UserView.of(u) for u in found])


@router.post("", status_code=status.HTTP_201_CREATED, responses={**REFUSED, **errors(422)})
async def create_user(
    body: NewUser, request: Request, tenant: CurrentTenant, session: Session
) -> UserView:
    """Add a person who signs in with this e-mail address and password."""
    try:
        created = await users.create_user(
            session,
            tenant_id=tenant.id,
            email=body.email,
            name=body.name,
            role=body.role,
            password=body.password,
        )
    except users.InvalidUserInput as exc:
        raise _invalid(exc) from exc
    except users.UserRefused as exc:
        raise ApiError(409, "refused", str(exc)) from exc
    request.state.audit_resource_id = str(created.id)
    request.state.audit_detail = {"email": created.email, "role": created.role}
    return UserView.of(created)


@router.patch("/{user_id}", responses={**NOT_FOUND, **REFUSED})
async def update_user(
    user_id: UserId, body: UserChange, request: Request, tenant: CurrentTenant, session: Session
) -> UserView:
    """Change a person's name, role, password or disabled flag. A new password or disabling
    ends their sessions (a password you change for yourself keeps this session)."""
    try:
        changed = await users.update_user(
            session,
            tenant_id=tenant.id,
            user_id=user_id,
            name=body.name,
            role=body.role,
            password=body.password,
            disabled=body.disabled,
            current_session_id=_current_session_id(request),
        )
    except users.UserNotFound as exc:
        raise _not_found(user_id) from exc
    except users.InvalidUserInput as exc:
        raise _invalid(exc) from exc
    except users.UserRefused as exc:
        raise ApiError(409, "refused", str(exc)) from exc
    detail: dict[str, Any] = {"email": changed.email}
    detail["changed"] = sorted(
        k for k, v in body.model_dump(exclude_unset=True).items() if v is not None
    )
    request.state.audit_detail = detail
    return UserView.of(changed)


@router.delete(
    "/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses={**NOT_FOUND, **REFUSED}
)
async def delete_user(
    user_id: UserId, request: Request, tenant: CurrentTenant, session: Session
) -> Response:
    """Delete a person; their sessions end. The audit log keeps their name in past entries."""
    try:
        gone = await users.delete_user(session, tenant_id=tenant.id, user_id=user_id)
    except users.UserNotFound as exc:
        raise _not_found(user_id) from exc
    except users.UserRefused as exc:
        raise ApiError(409, "refused", str(exc)) from exc
    request.state.audit_detail = {"email": gone.email, "role": gone.role}
    return Response(status_code=status.HTTP_204_NO_CONTENT)
