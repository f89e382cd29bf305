"""Datadog's official Python client, unchanged, pointed at a running relay.

If Datadog's generated client can create, list, get, update and delete service objects
and reads our errors as the statuses it knows, operators can use their existing tooling
(and Terraform-style automation built on these clients) against the relay.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.exceptions import ApiException
from datadog_api_client.v2.api.opsgenie_integration_api import OpsgenieIntegrationApi
from datadog_api_client.v2.model.opsgenie_service_create_attributes import (
    OpsgenieServiceCreateAttributes,
)
from datadog_api_client.v2.model.opsgenie_service_create_data import OpsgenieServiceCreateData
from datadog_api_client.v2.model.opsgenie_service_create_request import (
    OpsgenieServiceCreateRequest,
)
from datadog_api_client.v2.model.opsgenie_service_region_type import OpsgenieServiceRegionType
from datadog_api_client.v2.model.opsgenie_service_type import OpsgenieServiceType
from datadog_api_client.v2.model.opsgenie_service_update_attributes import (
    OpsgenieServiceUpdateAttributes,
)
from datadog_api_client.v2.model.opsgenie_service_update_data import OpsgenieServiceUpdateData
from datadog_api_client.v2.model.opsgenie_service_update_request import (
    OpsgenieServiceUpdateRequest,
)

from tests.e2e.conftest import RelayProcess

API_KEY = "e2e-dd-api-key-0123"
APP_KEY = "e2e-dd-app-key-0123"
OPSGENIE_KEY = "00000000-0000-0000-0000-000000000000"

pytestmark = pytest.mark.e2e


@pytest.fixture
def relay_process(relay: Callable[..., RelayProcess]) -> RelayProcess:
    return relay(RELAY_API_KEY=API_KEY, RELAY_APP_KEY=APP_KEY)


def client_for(
    process: RelayProcess, *, app_key: str = APP_KEY
) -> Iterator[OpsgenieIntegrationApi]:
    configuration = Configuration(  # type: ignore[no-untyped-call]  # the library is untyped
        host=process.url,
        api_key={"apiKeyAuth": API_KEY, "appKeyAuth": app_key},
        enable_retry=False,
        compress=False,
    )
    with ApiClient(configuration) as api_client:
        yield OpsgenieIntegrationApi(api_client)  # type: ignore[no-untyped-call]


@pytest.fixture
def api(relay_process: RelayProcess) -> Iterator[OpsgenieIntegrationApi]:
    yield from client_for(relay_process)


def create_request(name: str, **extra: Any) -> OpsgenieServiceCreateRequest:
    return OpsgenieServiceCreateRequest(
        data=OpsgenieServiceCreateData(
            attributes=OpsgenieServiceCreateAttributes(
                name=name,
                opsgenie_api_key=OPSGENIE_KEY,
                region=extra.pop("region", OpsgenieServiceRegionType.US),
                **extra,
            ),
            type=OpsgenieServiceType.OPSGENIE_SERVICE,
        )
    )


def test_create_list_get_update_delete(api: OpsgenieIntegrationApi) -> None:
    created = api.create_opsgenie_service(body=create_request("fake-opsgenie-service-name"))
    service_id = created.data.id
    assert str(uuid.UUID(service_id)) == service_id
    assert created.data.attributes.name == "fake-opsgenie-service-name"
    assert created.data.attributes.region == OpsgenieServiceRegionType.US
    assert created.data.attributes.custom_url is None

    listed = api.list_opsgenie_services()
    assert [item.id for item in listed.data] == [service_id]
    got = api.get_opsgenie_service(integration_service_id=service_id)
    assert got.data.attributes.name == "fake-opsgenie-service-name"

    # The seed's request, word for word.
    body = OpsgenieServiceUpdateRequest(
        data=OpsgenieServiceUpdateData(
            attributes=OpsgenieServiceUpdateAttributes(
                name="fake-opsgenie-service-name--updated",
                opsgenie_api_key=OPSGENIE_KEY,
                region=OpsgenieServiceRegionType.EU,
            ),
            id=service_id,
            type=OpsgenieServiceType.OPSGENIE_SERVICE,
        ),
    )
    updated = api.update_opsgenie_service(integration_service_id=service_id, body=body)
    assert updated.data.id == service_id
    assert updated.data.attributes.name == "fake-opsgenie-service-name--updated"
    assert updated.data.attributes.region == OpsgenieServiceRegionType.EU

    # A new destination needs the key again (a stored key never follows a moved URL); the
    # client takes the refusal as a 400 and sends the key in the same PATCH.
    keyless = OpsgenieServiceUpdateRequest(
        data=OpsgenieServiceUpdateData(
            attributes=OpsgenieServiceUpdateAttributes(
                region=OpsgenieServiceRegionType.CUSTOM, custom_url="https://og.example.com"
            ),
            id=service_id,
            type=OpsgenieServiceType.OPSGENIE_SERVICE,
        ),
    )
    with pytest.raises(ApiException) as refused:
        api.update_opsgenie_service(integration_service_id=service_id, body=keyless)
    assert refused.value.status == 400
    assert "opsgenie_api_key" in str(refused.value.body)
    custom = OpsgenieServiceUpdateRequest(
        data=OpsgenieServiceUpdateData(
            attributes=OpsgenieServiceUpdateAttributes(
                region=OpsgenieServiceRegionType.CUSTOM,
                custom_url="https://og.example.com",
                opsgenie_api_key=OPSGENIE_KEY,
            ),
            id=service_id,
            type=OpsgenieServiceType.OPSGENIE_SERVICE,
        ),
    )
    moved = api.update_opsgenie_service(integration_service_id=service_id, body=custom)
    assert moved.data.attributes.custom_url == "https://og.example.com"
    assert moved.data.attributes.name == "fake-opsgenie-service-name--updated"

    # Back to a fixed region: the client leaves the unset custom_url out, as Terraform does.
    back = OpsgenieServiceUpdateRequest(
        data=OpsgenieServiceUpdateData(
            attributes=OpsgenieServiceUpdateAttributes(
                region=OpsgenieServiceRegionType.US, opsgenie_api_key=OPSGENIE_KEY
            ),
            id=service_id,
            type=OpsgenieServiceType.OPSGENIE_SERVICE,
        ),
    )
    returned = api.update_opsgenie_service(integration_service_id=service_id, body=back)
    assert returned.data.attributes.region == OpsgenieServiceRegionType.US
    assert returned.data.attributes.custom_url is None

    api.delete_opsgenie_service(integration_service_id=service_id)
    assert api.list_opsgenie_services().data == []


def test_errors_arrive_as_the_statuses_the_client_knows(
    api: OpsgenieIntegrationApi, relay_process: RelayProcess
) -> None:
    api.create_opsgenie_service(body=create_request("taken"))

    with pytest.raises(ApiException) as conflict:
        api.create_opsgenie_service(body=create_request("TAKEN"))
    assert conflict.value.status == 409

    with pytest.raises(ApiException) as bad:
        api.create_opsgenie_service(
            body=create_request("custom-without-url", region=OpsgenieServiceRegionType.CUSTOM)
        )
    assert bad.value.status == 400
    assert "custom_url" in str(bad.value.body)

    with pytest.raises(ApiException) as missing:
        api.get_opsgenie_service(integration_service_id=str(uuid.uuid4()))
    assert missing.value.status == 404

    for wrong in client_for(relay_process, app_key="not-the-app-key"):
        with pytest.raises(ApiException) as forbidden:
            wrong.list_opsgenie_services()
        assert forbidden.value.status == 403

    assert OPSGENIE_KEY not in relay_process.logs()


def test_a_jsm_site_is_listed_read_and_patched_like_any_service_object(
    api: OpsgenieIntegrationApi, relay_process: RelayProcess
) -> None:
    """A Jira Service Management site is ``region: custom`` on ``*.atlassian.net`` with
    ``<email>:<API token>`` as its key: nothing the client does not already know."""
    site, credentials = "https://acme.atlassian.net", "ops@acme.example:atlassian-token-1"
    created = api.create_opsgenie_service(
        body=OpsgenieServiceCreateRequest(
            data=OpsgenieServiceCreateData(
                attributes=OpsgenieServiceCreateAttributes(
                    name="jsm-payments",
                    opsgenie_api_key=credentials,
                    region=OpsgenieServiceRegionType.CUSTOM,
                    custom_url=site,
                ),
                type=OpsgenieServiceType.OPSGENIE_SERVICE,
            )
        )
    )
    service_id = created.data.id
    [listed] = api.list_opsgenie_services().data
    assert (listed.id, listed.attributes.custom_url) == (service_id, site)
    read = api.get_opsgenie_service(integration_service_id=service_id)
    assert read.data.attributes.region == OpsgenieServiceRegionType.CUSTOM

    def patch(**attributes: Any) -> Any:
        return api.update_opsgenie_service(
            integration_service_id=service_id,
            body=OpsgenieServiceUpdateRequest(
                data=OpsgenieServiceUpdateData(
                    id=service_id,
                    attributes=OpsgenieServiceUpdateAttributes(**attributes),
                    type=OpsgenieServiceType.OPSGENIE_SERVICE,
                )
            ),
        )

    renamed = patch(name="jsm-checkout", opsgenie_api_key="ops@acme.example:atlassian-token-2")
    assert (renamed.data.attributes.name, renamed.data.attributes.custom_url) == (
        "jsm-checkout",
        site,
    )
    with pytest.raises(ApiException) as genie_key:  # the stored URL says JSM: email:token
        patch(opsgenie_api_key=OPSGENIE_KEY)
    assert genie_key.value.status == 400
    assert "<email>:<API token>" in str(genie_key.value.body)
    logs = relay_process.logs()
    assert "atlassian-token" not in logs
    assert OPSGENIE_KEY not in logs
