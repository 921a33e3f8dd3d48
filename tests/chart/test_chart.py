"""The Helm chart through the real Helm engine: lint, render with several value sets, validate every object."""

from __future__ import annotations

import base64
import importlib.util
import ssl
from typing import Any

import helm_python
import jsonschema
from cryptography import x509
import pytest
import yaml

from bert_operator.api.crd import crd_yaml, policy_crd, policy_crd_yaml
from bert_operator.policy import parse_policy
from bert_operator.render.values import DEFAULT_TRAINER_IMAGE
from bert_operator.webhook import PATH as WEBHOOK_PATH
from tests.chart.render import CHART, NAMESPACE, chart, crd_objects, kind, notes, objects, one
from tests.chart.test_operator_access import granted
from tests.conftest import REPO
from tests.schemas import object_errors

#: A default policy from values: the cluster-wide example's spec.
CLUSTER_DEFAULTS = yaml.safe_load((REPO / "examples" / "policy-cluster-defaults.yaml").read_text())

#: Kinds Kubernetes' own schemas do not cover (CRDs of other projects); checked by hand below instead.
FOREIGN_KINDS = {("cert-manager.io/v1", "Certificate"), ("cert-manager.io/v1", "Issuer"), ("monitoring.coreos.com/v1", "ServiceMonitor")}
#: The chart's own kind: checked against its CRD's schema (as the API server would) and parse_policy (as the webhook).
POLICY_KIND = ("bertoperator.io/v1alpha1", "BertTrainingPolicy")

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watchNamespaces": ["ml-training", "research"]},
    "webhook-cert-manager": {"webhook": {"enabled": True}},
    "webhook-own-issuer": {"webhook": {"enabled": True, "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}},
    "webhook-helm-certs": {"webhook": {"enabled": True, "certificates": "helm"}, "watchNamespaces": ["ml-training"]},
    "metrics-servicemonitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}}},
    "metrics-off": {"metrics": {"enabled": False}},
    "default-policy": {"defaultPolicy": {"enabled": True, "name": "cluster-defaults", "spec": CLUSTER_DEFAULTS["spec"]}},
    "tenant-roles-off": {"tenantRoles": {"enabled": False}},
    "everything": {"watchNamespaces": ["a"], "webhook": {"enabled": True}, "metrics": {"serviceMonitor": {"enabled": True}},
                   "defaultPolicy": {"enabled": True, "name": "default", "spec": {"limits": {"maxGpusPerJob": 16}}},
                   "serviceAccount": {"name": "custom-sa", "annotations": {"team": "ml"}}, "debug": True,
                   "imagePullSecrets": [{"name": "registry"}], "nodeSelector": {"pool": "system"},
                   "tolerations": [{"key": "system", "operator": "Exists", "effect": "NoSchedule"}], "priorityClassName": "system-cluster-critical"},
}


def deployment(found: list[dict[str, Any]]) -> dict[str, Any]:
    [found_deployment] = kind(found, "Deployment")
    return found_deployment


def container(found: list[dict[str, Any]]) -> dict[str, Any]:
    [operator] = deployment(found)["spec"]["template"]["spec"]["containers"]
    return operator


def env(found: list[dict[str, Any]]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(found)["env"]}


@pytest.mark.parametrize("values", [{}, VALUE_SETS["everything"], VALUE_SETS["webhook-helm-certs"]], ids=["defaults", "everything", "helm-certs"])
def test_lint_has_no_findings(values: dict[str, Any]) -> None:
    report = helm_python.lint(CHART, values or None, strict=True)
    assert report["messages"] == [] and report["errors"] == [], report


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_rendered_object_is_valid(name: str) -> None:
    found = objects(VALUE_SETS[name])
    assert found, "nothing rendered"
    for obj in found:
        where = f"{obj['kind']} {obj['metadata']['name']}"
        if (obj["apiVersion"], obj["kind"]) in FOREIGN_KINDS:
            assert obj["metadata"]["namespace"] == NAMESPACE and obj["spec"], where
            continue
        if (obj["apiVersion"], obj["kind"]) == POLICY_KIND:
            jsonschema.Draft4Validator(policy_schema()).validate(obj)
            parse_policy(obj)
            continue
        assert object_errors(obj) == [], f"{name}: {where}"
    for obj in crd_objects():
        assert object_errors(obj) == [], obj["metadata"]["name"]


def test_foreign_kinds_have_the_fields_their_operators_require() -> None:
    found = objects(VALUE_SETS["everything"])
    [certificate] = kind(found, "Certificate")
    [issuer] = kind(found, "Issuer")
    [monitor] = kind(found, "ServiceMonitor")
    assert certificate["spec"]["secretName"] == "bert-operator-webhook-tls"
    assert certificate["spec"]["dnsNames"] == ["bert-operator.bert-operator.svc", "bert-operator.bert-operator.svc.cluster.local"]
    assert certificate["spec"]["issuerRef"] == {"name": "bert-operator-webhook", "kind": "Issuer", "group": "cert-manager.io"}
    assert issuer["spec"] == {"selfSigned": {}} and issuer["metadata"]["name"] == "bert-operator-webhook"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s", "honorLabels": True}]
    [service] = kind(found, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}
    own = objects(VALUE_SETS["webhook-own-issuer"])
    assert not kind(own, "Issuer") and kind(own, "Certificate")[0]["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer"}


def policy_schema() -> dict[str, Any]:
    return policy_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def test_crds_folder_is_the_generated_crds() -> None:
    jobs, policies = chart().crds  # Helm installs them in file-name order, before any template
    assert (CHART / "crds" / "berttrainingjobs.yaml").read_text() == crd_yaml() == jobs["data"], \
        "run: bertjob crd > charts/bert-operator/crds/berttrainingjobs.yaml"
    assert (CHART / "crds" / "berttrainingpolicies.yaml").read_text() == policy_crd_yaml() == policies["data"], \
        "run: bertjob crd --policy > charts/bert-operator/crds/berttrainingpolicies.yaml"


def test_install_yaml_is_the_chart_rendered_with_defaults() -> None:
    spec = importlib.util.spec_from_file_location("render_install", REPO / "scripts" / "render-install.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (REPO / "manifests" / "install.yaml").read_text()
    assert text == module.install_yaml(), "run: python scripts/render-install.py"
    documents = [d for d in yaml.safe_load_all(text) if d]
    assert [d["kind"] for d in documents[:3]] == ["Namespace", "CustomResourceDefinition", "CustomResourceDefinition"]
    assert [d["metadata"]["name"] for d in documents[1:3]] == ["berttrainingjobs.bertoperator.io",
                                                                "berttrainingpolicies.bertoperator.io"]
    installed = {(o["kind"], o["metadata"]["name"]) for o in objects() if not module.is_hook(o)}  # no `helm test` Pod
    assert {(d["kind"], d["metadata"]["name"]) for d in documents[3:]} == installed


def test_deployment_is_one_hardened_replica_with_probe_ports_and_requests() -> None:
    found = objects()
    spec = deployment(found)["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    operator = container(found)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert operator["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert operator["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container(objects(VALUE_SETS["webhook-cert-manager"]))["readinessProbe"]["tcpSocket"] == {"port": "webhook"}
    assert {p["name"]: p["containerPort"] for p in operator["ports"]} == {"healthz": 8080, "progress": 8081, "metrics": 9090}
    assert operator["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
    assert operator["args"] == ["operator", "--liveness-port=8080", "--metrics-port=9090", "--progress-port=8081"]
    assert {m["mountPath"] for m in operator["volumeMounts"]} == {"/tmp"}  # the only writable path
    assert env(found) == {"BERTOP_NAMESPACES": "", "BERTOP_TRAINER_IMAGE": DEFAULT_TRAINER_IMAGE, "BERTOP_NCCL_DEBUG": "WARN",
                          "BERTOP_PROGRESS_URL": "http://bert-operator.bert-operator.svc:8081",
                          "BERTOP_RESYNC_SECONDS": "60", "BERTOP_PROGRESS_STALE_SECONDS": "600",
                          "BERTOP_RESTART_BACKOFF_SECONDS": "30", "BERTOP_RESTART_BACKOFF_MAX_SECONDS": "360",
                          "BERTOP_TEMPLATES_NAMESPACE": NAMESPACE, "BERTOP_POD_SECURITY": "restricted"}
    assert pod["serviceAccountName"] == kind(found, "ServiceAccount")[0]["metadata"]["name"]
    assert operator["image"] == "ghcr.io/bert-operator/operator:0.1.0"  # appVersion when image.tag is empty
    off = objects(VALUE_SETS["metrics-off"])
    assert "--metrics-port=0" in container(off)["args"] and "metrics" not in {p["name"] for p in container(off)["ports"]}


#: What the operator's ClusterRole grants in either mode: cluster-scoped resources, which no Role can grant.
CLUSTER_SCOPED = {("authentication.k8s.io", "tokenreviews", "create"),
                  ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
                  ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
                  ("bertoperator.io", "berttrainingpolicies", "list"), ("bertoperator.io", "berttrainingpolicies", "watch"),
                  ("bertoperator.io", "berttrainingpolicies/status", "patch"),
                  ("", "namespaces", "list"), ("", "namespaces", "watch")}


def triples(rules: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Every (group, resource, verb) the rules grant, repeats kept."""
    return [(group, resource, verb) for rule in rules for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]]


@pytest.mark.parametrize("name", ["defaults", "namespaced"])
def test_the_operator_reads_policies_and_namespace_labels_and_writes_policy_status_in_both_modes(name: str) -> None:
    found = objects(VALUE_SETS[name])
    rules = one(found, "ClusterRole")["rules"]
    assert CLUSTER_SCOPED <= granted(rules)
    for role in [one(found, "ClusterRole"), *kind(found, "Role")]:
        listed = triples(role["rules"])
        assert len(listed) == len(set(listed)), f"{role['kind']} {role['metadata']['name']} grants a verb twice"


def test_namespaced_mode_grants_job_access_only_in_the_watched_namespaces() -> None:
    cluster_wide = granted(one(objects(), "ClusterRole")["rules"])
    found = objects(VALUE_SETS["namespaced"])
    assert env(found)["BERTOP_NAMESPACES"] == "ml-training,research"
    cluster_scoped = granted(one(found, "ClusterRole")["rules"])
    # Cluster-scoped only: TokenReviews, kopf's CRD watch, policies and the namespaces whose labels select them
    # (and which kopf follows in namespaced mode).
    assert cluster_scoped == CLUSTER_SCOPED
    roles = [r for r in kind(found, "Role") if r["metadata"]["name"] != "bert-operator-templates"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["ml-training", "research"]
    for role in roles:
        assert granted(role["rules"]) == cluster_wide - cluster_scoped
    bindings = [b for b in kind(found, "RoleBinding") if b["metadata"]["name"] != "bert-operator-templates"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["ml-training", "research"]
    for binding in bindings + kind(found, "ClusterRoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "bert-operator", "namespace": NAMESPACE}]


def test_webhook_with_cert_manager_is_wired_to_the_operators_handler() -> None:
    found = objects(VALUE_SETS["webhook-cert-manager"])
    [configuration] = kind(found, "ValidatingWebhookConfiguration")
    assert configuration["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": "bert-operator/bert-operator-webhook"}
    hook, _policies = configuration["webhooks"]
    assert hook["name"] == "validate.berttrainingjobs.bertoperator.io"
    assert hook["clientConfig"]["service"] == {"name": "bert-operator", "namespace": NAMESPACE, "path": WEBHOOK_PATH, "port": 443}
    assert "caBundle" not in hook["clientConfig"]  # cert-manager's cainjector fills it in
    assert hook["rules"] == [{"apiGroups": ["bertoperator.io"], "apiVersions": ["v1alpha1"], "resources": ["berttrainingjobs"],
                              "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"}]
    assert hook["sideEffects"] == "None" and hook["failurePolicy"] == "Fail"
    operator = container(found)
    assert env(found)["BERTOP_WEBHOOK_PORT"] == "9443" and {"name": "webhook", "containerPort": 9443, "protocol": "TCP"} in operator["ports"]
    mount = next(m for m in operator["volumeMounts"] if m["name"] == "webhook-tls")
    assert mount["mountPath"] == env(found)["BERTOP_WEBHOOK_CERT_DIR"] and mount["readOnly"] is True
    volume = next(v for v in deployment(found)["spec"]["template"]["spec"]["volumes"] if v["name"] == "webhook-tls")
    assert volume["secret"]["secretName"] == kind(found, "Certificate")[0]["spec"]["secretName"]
    [service] = kind(found, "Service")
    assert {"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"} in service["spec"]["ports"]
    assert not kind(objects(), "ValidatingWebhookConfiguration")  # off by default


def test_helm_generated_certificate_is_signed_by_the_ca_bundle_for_the_service_name(tmp_path: Any) -> None:
    found = objects(VALUE_SETS["webhook-helm-certs"])
    [secret] = kind(found, "Secret")
    [configuration] = kind(found, "ValidatingWebhookConfiguration")
    hook, policies = configuration["webhooks"]
    assert policies["clientConfig"]["caBundle"] == hook["clientConfig"]["caBundle"]  # one Service, one certificate
    assert "annotations" not in configuration["metadata"]
    assert hook["namespaceSelector"] == {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["ml-training"]}]}
    ca = base64.b64decode(hook["clientConfig"]["caBundle"])
    assert ca == base64.b64decode(secret["data"]["ca.crt"]) and secret["type"] == "kubernetes.io/tls"
    pem, key = base64.b64decode(secret["data"]["tls.crt"]), base64.b64decode(secret["data"]["tls.key"])
    (tmp_path / "tls.crt").write_bytes(pem)
    (tmp_path / "tls.key").write_bytes(key)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")  # the key is the certificate's
    certificate, authority = x509.load_pem_x509_certificate(pem), x509.load_pem_x509_certificate(ca)
    certificate.verify_directly_issued_by(authority)  # signed by the caBundle's CA
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "bert-operator.bert-operator.svc" in names
    assert authority.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    days = (certificate.not_valid_after_utc - certificate.not_valid_before_utc).days
    assert 3649 <= days <= 3650  # webhook.helm.validityDays
    # The HTTPS handshake against the chain is exercised in test_operator_access.py.


@pytest.mark.parametrize("bad, where", [
    ({"webhook": {"certificates": "self"}}, "certificates"),
    ({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces"),
    ({"replicas": 3}, "replicas"),
    ({"metrics": {"port": 70000}}, "port"),
    ({"webhook": {"failurePolicy": "Sometimes"}}, "failurePolicy"),
    ({"serviceAccount": {"create": False}}, "serviceAccount.name is required"),
    ({"webhook": {"policyFailurePolicy": "Sometimes"}}, "policyFailurePolicy"),
    ({"tenantRoles": {"enabled": "yes"}}, "tenantRoles"),
    ({"tenantRoles": {"aggregate": True}}, "tenantRoles"),
    ({"defaultPolicy": {"enabled": True, "name": "Team_A", "spec": {}}}, "defaultPolicy"),
    ({"defaultPolicy": {"enabled": True, "name": "default", "spec": {"limit": {"maxGpusPerJob": 16}}}}, "defaultPolicy"),
    ({"defaultPolicy": {"enabled": True, "name": "default", "spec": "limits: {}"}}, "defaultPolicy"),
])
def test_values_schema_refuses_bad_values(bad: dict[str, Any], where: str) -> None:
    with pytest.raises(helm_python.HelmError) as caught:
        chart().render(bad, name="bert-operator", namespace=NAMESPACE)
    assert where in str(caught.value)


def test_notes_tell_the_next_kubectl_apply_step() -> None:
    text = notes()
    assert "kubectl apply -f examples/squad-v1.1.yaml" in text and "kubectl get btj -n ml-training" in text
    assert "MPI Operator" in text
    assert "does not watch" in notes(VALUE_SETS["namespaced"].copy() | {"watchNamespaces": ["research"]})
    assert "kubectl -n bert-operator get certificate bert-operator-webhook" in notes(VALUE_SETS["webhook-cert-manager"])


def test_progress_tls_uses_the_webhook_certificate_and_an_https_url() -> None:
    [deployment] = kind(objects({"webhook": {"enabled": True, "certificates": "helm"}, "progress": {"tls": True}}), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    variables = {e["name"]: e.get("value") for e in container["env"]}
    assert variables["BERTOP_PROGRESS_URL"] == f"https://bert-operator.{NAMESPACE}.svc:8081"
    mounted = {m["mountPath"] for m in container["volumeMounts"]}
    assert variables["BERTOP_PROGRESS_CERT_DIR"] in mounted
    with pytest.raises(Exception, match="progress.tls needs webhook.enabled"):
        objects({"progress": {"tls": True}})


def test_job_templates_become_configmaps_the_operator_alone_may_read_in_its_namespace() -> None:
    """Each values.jobTemplates entry is a labelled ConfigMap of the release namespace whose template.yaml the
    operator's catalog reads as that overlay; the operator's only ConfigMap access is a Role there (list, watch)."""
    import yaml as _yaml

    from bert_operator.templates.catalog import read_configmap

    entries = [_yaml.safe_load((REPO / "examples" / "templates" / f"{name}.yaml").read_text())
               for name in ("efa", "istio-off")]
    found = objects({"jobTemplates": entries, "podSecurity": "baseline"})
    configmaps = [o for o in kind(found, "ConfigMap") if "bertoperator.io/job-template" in o["metadata"]["labels"]]
    read = sorted((read_configmap(c)[0], read_configmap(c)[1].ref) for c in configmaps)
    assert read == [("efa", "efa@1"), ("istio-off", "istio-off@1")]
    assert {c["metadata"]["namespace"] for c in configmaps} == {NAMESPACE}
    [role] = [r for r in kind(found, "Role") if r["metadata"]["name"] == "bert-operator-templates"]
    assert role["metadata"]["namespace"] == NAMESPACE and granted(role["rules"]) == {("", "configmaps", "list"),
                                                                                      ("", "configmaps", "watch")}
    assert not any(rule_resource == "configmaps" for _, rule_resource, _ in granted(one(found, "ClusterRole")["rules"]))
    assert env(found)["BERTOP_POD_SECURITY"] == "baseline"
