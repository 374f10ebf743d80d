"""Webhook routers, one module per provider."""

from fastapi import APIRouter

WEBHOOK_ROUTERS: list[APIRouter] = []
