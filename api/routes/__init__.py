"""API routers, one module per resource."""

from fastapi import APIRouter

from api.routes import health

ROUTERS: list[APIRouter] = [health.router]
