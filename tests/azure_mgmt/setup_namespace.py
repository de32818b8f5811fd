"""Sets up a gridmq namespace with the unmodified azure-mgmt-eventgrid SDK, then publishes over
MQTT under the grants it created.

Run by tests/tests/interop/arm_sdk.rs with one JSON argument (base_url, token, subscription,
resource_group, namespace, ca, webhook, thumbprint, mqtt_port, cert, key). Prints one JSON
object on stdout: what the SDK returned, and how the MQTT publish went. Any exception fails the
test with its traceback.
"""

import datetime
import json
import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from azure.core.credentials import AccessToken
from azure.core.exceptions import ResourceNotFoundError
from azure.mgmt.eventgrid import EventGridManagementClient
from azure.mgmt.eventgrid.models import (
    Client,
    ClientCertificateAuthentication,
    ClientGroup,
    DeliveryConfiguration,
    FiltersConfiguration,
    NamespaceTopic,
    NamespaceTopicUpdateParameters,
    PermissionBinding,
    PushInfo,
    QueueInfo,
    StringBeginsWithFilter,
    Subscription,
    SubscriptionUpdateParameters,
    TopicSpace,
    WebHookEventSubscriptionDestination,
)


class AdminToken:
    """A credential that hands out gridmq's admin token, as azure-identity would an Entra one."""

    def __init__(self, token):
        self.token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self.token, int(time.time()) + 3600)


def main():
    args = json.loads(sys.argv[1])
    client = EventGridManagementClient(
        AdminToken(args["token"]),
        args["subscription"],
        base_url=args["base_url"],
        api_version="2025-02-15",
        connection_verify=args["ca"],
    )
    rg, ns = args["resource_group"], args["namespace"]
    out = {"api_version": client._config.api_version}

    topic = client.namespace_topics.begin_create_or_update(
        rg,
        ns,
        "telemetry",
        NamespaceTopic(
            event_retention_in_days=1, input_schema="CloudEventSchemaV1_0", publisher_type="Custom"
        ),
    ).result()
    out["topic"] = topic.as_dict()

    queue = Subscription(
        delivery_configuration=DeliveryConfiguration(
            delivery_mode="Queue",
            queue=QueueInfo(
                receive_lock_duration_in_seconds=60,
                max_delivery_count=5,
                event_time_to_live=datetime.timedelta(hours=12),
            ),
        ),
        event_delivery_schema="CloudEventSchemaV1_0",
        filters_configuration=FiltersConfiguration(
            included_event_types=["MQTT.EventPublished"],
            filters=[StringBeginsWithFilter(key="subject", values=["vehicles/"])],
        ),
    )
    subs = client.namespace_topic_event_subscriptions
    out["queue"] = subs.begin_create_or_update(rg, ns, "telemetry", "pull", queue).result().as_dict()

    push = Subscription(
        delivery_configuration=DeliveryConfiguration(
            delivery_mode="Push",
            push=PushInfo(
                max_delivery_count=3,
                destination=WebHookEventSubscriptionDestination(endpoint_url=args["webhook"]),
            ),
        ),
        event_delivery_schema="CloudEventSchemaV1_0",
    )
    out["push"] = subs.begin_create_or_update(rg, ns, "telemetry", "hook", push).result().as_dict()

    device = Client(
        authentication_name="dev1",
        state="Enabled",
        attributes={"role": "sensor"},
        client_certificate_authentication=ClientCertificateAuthentication(
            validation_scheme="ThumbprintMatch", allowed_thumbprints=[args["thumbprint"]]
        ),
    )
    out["client"] = client.clients.begin_create_or_update(rg, ns, "dev1", device).result().as_dict()
    out["group"] = client.client_groups.begin_create_or_update(
        rg, ns, "sensors", ClientGroup(query="attributes.role = 'sensor'")
    ).result().as_dict()
    out["space"] = client.topic_spaces.begin_create_or_update(
        rg, ns, "vehicles", TopicSpace(topic_templates=["vehicles/${client.authenticationName}/#"])
    ).result().as_dict()
    out["binding"] = client.permission_bindings.begin_create_or_update(
        rg,
        ns,
        "sensors-publish",
        PermissionBinding(client_group_name="sensors", topic_space_name="vehicles", permission="Publisher"),
    ).result().as_dict()

    # A DELETE completes at once too (200, no polling headers).
    subs.begin_create_or_update(rg, ns, "telemetry", "scratch", queue).result()
    subs.begin_delete(rg, ns, "telemetry", "scratch").result()
    out["subscriptions"] = sorted(
        s.name for s in subs.list_by_namespace_topic(rg, ns, "telemetry")
    )
    out["read_back"] = subs.get(rg, ns, "telemetry", "pull").as_dict()
    try:
        client.namespace_topics.get("elsewhere", ns, "telemetry")
        out["elsewhere"] = "found"
    except ResourceNotFoundError as error:
        out["elsewhere"] = error.status_code

    out["mqtt"] = publish(args)

    # Changed while the event waits in the queue (its PUBACK came after it was stored): the
    # queue keeps it. begin_update sends PATCH.
    patch = SubscriptionUpdateParameters(
        delivery_configuration=DeliveryConfiguration(
            delivery_mode="Queue", queue=QueueInfo(max_delivery_count=6)
        )
    )
    out["patched"] = subs.begin_update(rg, ns, "telemetry", "pull", patch).result().as_dict()
    out["patched_topic"] = client.namespace_topics.begin_update(
        rg, ns, "telemetry", NamespaceTopicUpdateParameters(event_retention_in_days=2)
    ).result().as_dict()
    print(json.dumps(out))


def publish(args):
    """Connects as dev1 with its certificate and publishes one QoS 1 message."""
    connected = threading.Event()
    result = {}

    def on_connect(client, userdata, flags, reason_code, properties):
        result["connack"] = str(reason_code)
        connected.set()

    device = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="dev1-session", protocol=mqtt.MQTTv5
    )
    device.username_pw_set("dev1")
    device.tls_set(
        ca_certs=args["ca"],
        certfile=args["cert"],
        keyfile=args["key"],
        cert_reqs=ssl.CERT_REQUIRED,
    )
    device.on_connect = on_connect
    device.on_publish = lambda client, userdata, mid, reason_code, properties: result.update(
        puback=str(reason_code)
    )
    device.connect("127.0.0.1", args["mqtt_port"])
    device.loop_start()
    try:
        if not connected.wait(10):
            result["connack"] = "timeout"
            return result
        # A JSON payload, declared as such, is carried under `data` as JSON.
        properties = Properties(PacketTypes.PUBLISH)
        properties.PayloadFormatIndicator = 1
        properties.ContentType = "application/json"
        info = device.publish(
            "vehicles/dev1/speed", json.dumps({"kmh": 47.5}), qos=1, properties=properties
        )
        info.wait_for_publish(10)
        result["published"] = info.is_published()
        result["rc"] = info.rc
    finally:
        device.disconnect()
        device.loop_stop()
    return result


if __name__ == "__main__":
    main()
