"""Webhook routes: parse, call the service, return."""

from uuid import UUID

from fastapi import APIRouter, Request, Response, status

from backend.conditions import PRECONDITION_FAILED, IfMatchDep
from backend.deps import OwnerId, SessionDep, location
from backend.models import (
    DeliveryPublic,
    Page,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
    WebhookUpdate,
)
from backend.pagination import PAGE, PageDep, page_of
from backend.webhooks import service

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


def _allowed_hosts(request: Request) -> list[str]:
    return request.app.state.settings.webhook_allowed_hosts  # type: ignore[no-any-return]


@router.get("", response_model=Page[WebhookPublic], openapi_extra=PAGE.openapi)
async def list_webhooks(
    session: SessionDep, user_id: OwnerId, page: PageDep
) -> Page[WebhookPublic]:
    """The caller's webhooks, newest first, without their secrets."""
    webhooks, next_cursor = await service.list_webhooks(session, user_id=user_id, page=page)
    return page_of(WebhookPublic, webhooks, next_cursor)


@router.post("", response_model=WebhookCreated, status_code=status.HTTP_201_CREATED)
async def create_webhook(
    session: SessionDep,
    user_id: OwnerId,
    webhook_in: WebhookCreate,
    request: Request,
    response: Response,
) -> WebhookCreated:
    """A new webhook; its `secret` is shown here once (rotate it to get a new one). At
    most 10 per user (409)."""
    webhook = await service.create_webhook(
        session, user_id=user_id, webhook_in=webhook_in, allowed_hosts=_allowed_hosts(request)
    )
    response.headers["Location"] = location(request, user_id, "webhooks", webhook.id)
    return webhook


@router.get("/{webhook_id}", response_model=WebhookPublic)
async def get_webhook(session: SessionDep, user_id: OwnerId, webhook_id: UUID) -> WebhookPublic:
    """One webhook; `disabled_reason` says why deliveries stopped, if they did."""
    return await service.get_webhook(session, user_id=user_id, webhook_id=webhook_id)


@router.patch("/{webhook_id}", response_model=WebhookPublic, responses=PRECONDITION_FAILED)
async def update_webhook(
    session: SessionDep,
    user_id: OwnerId,
    webhook_id: UUID,
    webhook_in: WebhookUpdate,
    precondition: IfMatchDep,
    request: Request,
) -> WebhookPublic:
    """Change only the fields sent; `enabled: true` resumes deliveries where they stopped."""
    changes = {field: getattr(webhook_in, field) for field in webhook_in.model_fields_set}
    return await service.update_webhook(
        session,
        user_id=user_id,
        webhook_id=webhook_id,
        changes=changes,
        allowed_hosts=_allowed_hosts(request),
        precondition=precondition,
    )


@router.delete(
    "/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=PRECONDITION_FAILED
)
async def delete_webhook(
    session: SessionDep, user_id: OwnerId, webhook_id: UUID, precondition: IfMatchDep
) -> None:
    """Delete the webhook; its pending deliveries are dropped."""
    await service.delete_webhook(
        session, user_id=user_id, webhook_id=webhook_id, precondition=precondition
    )


@router.post("/{webhook_id}/rotate-secret", response_model=WebhookCreated)
async def rotate_webhook_secret(
    session: SessionDep, user_id: OwnerId, webhook_id: UUID
) -> WebhookCreated:
    """A new `secret`, shown here once; for 24 hours deliveries are signed with the old
    one too (`webhook-signature` holds both), so receivers can switch without a gap."""
    return await service.rotate_webhook_secret(session, user_id=user_id, webhook_id=webhook_id)


@router.get(
    "/{webhook_id}/deliveries", response_model=Page[DeliveryPublic], openapi_extra=PAGE.openapi
)
async def list_deliveries(
    session: SessionDep, user_id: OwnerId, webhook_id: UUID, page: PageDep
) -> Page[DeliveryPublic]:
    """The webhook's deliveries, newest first: the event, its attempts, the receiver's
    last answer and the next attempt."""
    found, next_cursor = await service.list_deliveries(
        session, user_id=user_id, webhook_id=webhook_id, page=page
    )
    return page_of(DeliveryPublic, found, next_cursor)


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryPublic,
    status_code=status.HTTP_202_ACCEPTED,
)
async def redeliver_delivery(
    session: SessionDep, user_id: OwnerId, webhook_id: UUID, delivery_id: UUID
) -> DeliveryPublic:
    """Send the delivery again now, with the same `webhook-id`; its retries start over."""
    return await service.redeliver_delivery(
        session, user_id=user_id, webhook_id=webhook_id, delivery_id=delivery_id
    )


@router.post(
    "/{webhook_id}/ping", response_model=DeliveryPublic, status_code=status.HTTP_202_ACCEPTED
)
async def ping_webhook(session: SessionDep, user_id: OwnerId, webhook_id: UUID) -> DeliveryPublic:
    """Queue a `webhook.ping` delivery, to check the endpoint and its signature check."""
    return await service.ping_webhook(session, user_id=user_id, webhook_id=webhook_id)
