"""Approvals over HTTP (being written)."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1")
