"""A required-fields schema check for the Kubernetes objects deploy/kubernetes
ships, written here because no Debian package validates manifests offline
(kubeconform and kubeval are not packaged; `kubectl apply --dry-run` needs an
API server).

Each kind's schema lists the fields of the upstream API that our manifests
may use, with their types, which of them are required, and the enumerations,
ranges and name formats the API server would enforce. A field outside the
schema is an error: a typo (`readinessProb`) or a field at the wrong level
would otherwise be dropped silently by the API server. validate(document)
returns the problems as "path: message" strings; k8s_schema_test.py proves
each kind of problem is reported."""

import re

# --- leaf types: each a function value -> error message or None -----------


def string(value):
    return None if isinstance(value, str) else "must be a string"


def integer(value):
    ok = isinstance(value, int) and not isinstance(value, bool)
    return None if ok else "must be an integer"


def boolean(value):
    return None if isinstance(value, bool) else "must be true or false"


def enum(*allowed):
    def check(value):
        return None if value in allowed else "must be one of %s" % ", ".join(allowed)
    return check


def matching(pattern, what):
    regex = re.compile(pattern)

    def check(value):
        if not isinstance(value, str) or not regex.fullmatch(value):
            return "%r is not %s" % (value, what)
        return None
    return check


def port_number(value):
    if integer(value) is not None or not 1 <= value <= 65535:
        return "must be a port number 1..65535"
    return None


def non_negative(value):
    if integer(value) is not None or value < 0:
        return "must be an integer >= 0"
    return None


def positive(value):
    if integer(value) is not None or value < 1:
        return "must be an integer >= 1"
    return None


DNS_SUBDOMAIN = matching(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", "a DNS-1123 subdomain")
DNS_LABEL = matching(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", "a DNS-1123 label")
# IANA_SVC_NAME: what a named port must be.
PORT_NAME = matching(r"(?=.{1,15}$)(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?",
                     "an IANA service name")
QUANTITY = matching(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?", "a resource quantity")
PROMETHEUS_DURATION = matching(r"([0-9]+(ms|s|m|h|d|w|y))+", "a Prometheus duration")
LABEL_KEY = matching(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?"
                     r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", "a label key")
LABEL_VALUE = matching(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?", "a label value")
CAPABILITY = matching(r"[A-Z_]+", "a capability name (upper case, without CAP_)")
ABSOLUTE_PATH = matching(r"/.*", "an absolute path")


def port_or_name(value):
    return port_number(value) if isinstance(value, int) else PORT_NAME(value)


def quantity(value):
    return None if integer(value) is None else QUANTITY(value)


# --- composite types ------------------------------------------------------


class Obj:
    def __init__(self, fields, required=()):
        self.fields = fields
        self.required = set(required)
        unknown = self.required - set(fields)
        assert not unknown, "required fields not in the schema: %s" % unknown


class ListOf:
    def __init__(self, item, min_items=0):
        self.item = item
        self.min_items = min_items


class MapOf:
    def __init__(self, key, value):
        self.key = key
        self.value = value


def check(value, schema, path, problems, partial=False):
    """Appends to `problems` what is wrong with `value`. `partial` (a patch)
    skips the required-field checks below the top level."""
    if isinstance(schema, Obj):
        if not isinstance(value, dict):
            problems.append("%s: must be a mapping" % path)
            return
        if not partial:
            for name in sorted(schema.required - set(value)):
                problems.append("%s.%s: required field missing" % (path, name))
        for name, item in value.items():
            if name not in schema.fields:
                problems.append("%s.%s: unknown field" % (path, name))
                continue
            check(item, schema.fields[name], "%s.%s" % (path, name), problems, partial)
    elif isinstance(schema, ListOf):
        if not isinstance(value, list):
            problems.append("%s: must be a list" % path)
            return
        if len(value) < schema.min_items:
            problems.append("%s: needs at least %d item(s)" % (path, schema.min_items))
        for index, item in enumerate(value):
            check(item, schema.item, "%s[%d]" % (path, index), problems, partial)
    elif isinstance(schema, MapOf):
        if not isinstance(value, dict):
            problems.append("%s: must be a mapping" % path)
            return
        for key, item in value.items():
            message = schema.key(key)
            if message:
                problems.append("%s: key %s" % (path, message))
            check(item, schema.value, "%s[%s]" % (path, key), problems, partial)
    else:
        message = schema(value)
        if message:
            problems.append("%s: %s" % (path, message))


# --- shared pieces --------------------------------------------------------

LABELS = MapOf(LABEL_KEY, LABEL_VALUE)
ANNOTATIONS = MapOf(LABEL_KEY, string)
OBJECT_META = Obj({"name": DNS_SUBDOMAIN, "namespace": DNS_LABEL, "labels": LABELS,
                   "annotations": ANNOTATIONS}, required=["name"])
LABEL_SELECTOR = Obj({
    "matchLabels": LABELS,
    "matchExpressions": ListOf(Obj({"key": LABEL_KEY,
                                    "operator": enum("In", "NotIn", "Exists", "DoesNotExist"),
                                    "values": ListOf(string)}, required=["key", "operator"])),
})
SECCOMP_PROFILE = Obj({"type": enum("RuntimeDefault", "Localhost", "Unconfined"),
                       "localhostProfile": string}, required=["type"])
USER_ID = non_negative
CONTAINER_SECURITY = Obj({
    "runAsUser": USER_ID, "runAsGroup": USER_ID, "runAsNonRoot": boolean,
    "allowPrivilegeEscalation": boolean, "readOnlyRootFilesystem": boolean,
    "privileged": boolean, "seccompProfile": SECCOMP_PROFILE,
    "capabilities": Obj({"add": ListOf(CAPABILITY), "drop": ListOf(CAPABILITY)}),
})
POD_SECURITY = Obj({
    "runAsUser": USER_ID, "runAsGroup": USER_ID, "runAsNonRoot": boolean, "fsGroup": USER_ID,
    "supplementalGroups": ListOf(USER_ID), "seccompProfile": SECCOMP_PROFILE,
})
PROBE = Obj({
    "grpc": Obj({"port": port_number, "service": string}, required=["port"]),
    "exec": Obj({"command": ListOf(string, min_items=1)}, required=["command"]),
    "httpGet": Obj({"path": string, "port": port_or_name, "scheme": enum("HTTP", "HTTPS")},
                   required=["port"]),
    "tcpSocket": Obj({"port": port_or_name}, required=["port"]),
    "initialDelaySeconds": non_negative, "periodSeconds": positive, "timeoutSeconds": positive,
    "successThreshold": positive, "failureThreshold": positive,
})
RESOURCES = Obj({"requests": MapOf(string, quantity), "limits": MapOf(string, quantity)})
PROTOCOL = enum("TCP", "UDP", "SCTP")
CONTAINER = Obj({
    "name": DNS_LABEL, "image": string, "imagePullPolicy": enum("Always", "IfNotPresent", "Never"),
    "command": ListOf(string), "args": ListOf(string),
    "ports": ListOf(Obj({"name": PORT_NAME, "containerPort": port_number, "protocol": PROTOCOL},
                        required=["containerPort"])),
    "resources": RESOURCES, "securityContext": CONTAINER_SECURITY,
    "volumeMounts": ListOf(Obj({"name": DNS_LABEL, "mountPath": ABSOLUTE_PATH,
                                "readOnly": boolean}, required=["name", "mountPath"])),
    "readinessProbe": PROBE, "livenessProbe": PROBE, "startupProbe": PROBE,
}, required=["name", "image"])
VOLUME = Obj({
    "name": DNS_LABEL,
    "hostPath": Obj({"path": ABSOLUTE_PATH,
                     "type": enum("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File",
                                  "Socket", "CharDevice", "BlockDevice")}, required=["path"]),
    "emptyDir": Obj({"medium": enum("", "Memory"), "sizeLimit": quantity}),
}, required=["name"])
POD_SPEC = Obj({
    "serviceAccountName": DNS_SUBDOMAIN, "automountServiceAccountToken": boolean,
    "enableServiceLinks": boolean, "terminationGracePeriodSeconds": non_negative,
    "restartPolicy": enum("Always", "OnFailure", "Never"), "securityContext": POD_SECURITY,
    "initContainers": ListOf(CONTAINER), "containers": ListOf(CONTAINER, min_items=1),
    "volumes": ListOf(VOLUME), "nodeSelector": LABELS, "priorityClassName": DNS_SUBDOMAIN,
    "hostNetwork": boolean, "hostPID": boolean, "hostIPC": boolean,
    "tolerations": ListOf(Obj({"key": string, "operator": enum("Exists", "Equal"),
                               "value": string, "effect": string})),
}, required=["containers"])
POD_TEMPLATE = Obj({"metadata": Obj({"labels": LABELS, "annotations": ANNOTATIONS}),
                    "spec": POD_SPEC}, required=["metadata", "spec"])
NETWORK_PEER = Obj({"podSelector": LABEL_SELECTOR, "namespaceSelector": LABEL_SELECTOR,
                    "ipBlock": Obj({"cidr": string, "except": ListOf(string)},
                                   required=["cidr"])})
NETWORK_PORT = Obj({"protocol": PROTOCOL, "port": port_or_name, "endPort": port_number})


def top_level(spec_schema=None, spec_required=True, extra=None):
    fields = {"apiVersion": string, "kind": string, "metadata": OBJECT_META}
    required = ["apiVersion", "kind", "metadata"]
    if spec_schema is not None:
        fields["spec"] = spec_schema
        if spec_required:
            required.append("spec")
    fields.update(extra or {})
    return Obj(fields, required=required)


# --- the kinds ------------------------------------------------------------

KINDS = {
    ("apps/v1", "DaemonSet"): top_level(Obj({
        "selector": LABEL_SELECTOR, "template": POD_TEMPLATE, "minReadySeconds": non_negative,
        "revisionHistoryLimit": non_negative,
        "updateStrategy": Obj({"type": enum("RollingUpdate", "OnDelete"),
                               "rollingUpdate": Obj({"maxUnavailable": port_or_name,
                                                     "maxSurge": port_or_name})}),
    }, required=["selector", "template"])),
    ("v1", "Service"): top_level(Obj({
        "clusterIP": string, "selector": LABELS,
        "type": enum("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"),
        "internalTrafficPolicy": enum("Cluster", "Local"),
        "ports": ListOf(Obj({"name": PORT_NAME, "port": port_number, "targetPort": port_or_name,
                             "protocol": PROTOCOL, "appProtocol": string},
                            required=["port"]), min_items=1),
    }, required=["ports"])),
    ("v1", "ServiceAccount"): top_level(extra={"automountServiceAccountToken": boolean}),
    ("v1", "Namespace"): top_level(),
    ("v1", "Pod"): top_level(POD_SPEC),
    ("networking.k8s.io/v1", "NetworkPolicy"): top_level(Obj({
        "podSelector": LABEL_SELECTOR,
        "policyTypes": ListOf(enum("Ingress", "Egress")),
        "ingress": ListOf(Obj({"from": ListOf(NETWORK_PEER), "ports": ListOf(NETWORK_PORT)})),
        "egress": ListOf(Obj({"to": ListOf(NETWORK_PEER), "ports": ListOf(NETWORK_PORT)})),
    }, required=["podSelector"])),
    # The Prometheus operator's CRDs (monitoring.coreos.com/v1).
    ("monitoring.coreos.com/v1", "ServiceMonitor"): top_level(Obj({
        "jobLabel": LABEL_KEY, "selector": LABEL_SELECTOR,
        "namespaceSelector": Obj({"any": boolean, "matchNames": ListOf(DNS_LABEL)}),
        "endpoints": ListOf(Obj({
            "port": PORT_NAME, "path": ABSOLUTE_PATH, "scheme": enum("http", "https"),
            "interval": PROMETHEUS_DURATION, "scrapeTimeout": PROMETHEUS_DURATION,
            "honorLabels": boolean}, required=["port"]), min_items=1),
    }, required=["selector", "endpoints"])),
    ("monitoring.coreos.com/v1", "PrometheusRule"): top_level(Obj({
        "groups": ListOf(Obj({
            "name": string, "interval": PROMETHEUS_DURATION,
            "rules": ListOf(Obj({"alert": string, "record": string, "expr": string,
                                 "for": PROMETHEUS_DURATION, "labels": LABELS,
                                 "annotations": ANNOTATIONS}, required=["expr"]), min_items=1),
        }, required=["name", "rules"]), min_items=1),
    }, required=["groups"])),
}

KUSTOMIZATION = Obj({
    "apiVersion": enum("kustomize.config.k8s.io/v1beta1"), "kind": enum("Kustomization"),
    "namespace": DNS_LABEL, "namePrefix": string, "resources": ListOf(string, min_items=1),
    "images": ListOf(Obj({"name": string, "newName": string, "newTag": string},
                         required=["name"])),
    "patches": ListOf(Obj({"path": string, "target": Obj({"kind": string, "name": string})},
                          required=["path"])),
}, required=["apiVersion", "kind", "resources"])


def validate(document, patch=False):
    """Problems with one Kubernetes object, as "path: message" strings. With
    `patch` (a strategic merge patch) only apiVersion, kind and
    metadata.name are required; every field present is still checked."""
    if not isinstance(document, dict):
        return ["document: must be a mapping"]
    key = (document.get("apiVersion"), document.get("kind"))
    if key not in KINDS:
        return ["%s/%s: no schema for this kind (add one to k8s_schema.py)" % key]
    problems = []
    if patch:
        if not isinstance(document.get("metadata"), dict) or "name" not in document["metadata"]:
            problems.append("%s.metadata.name: a patch must name its target" % key[1])
    check(document, KINDS[key], key[1], problems, partial=patch)
    return problems


def validate_kustomization(document):
    problems = []
    check(document, KUSTOMIZATION, "Kustomization", problems)
    return problems
