#!/usr/bin/env python3
"""k8s_validate.py - validates Kubernetes manifests against the API's schemas,
strictly (an unknown field is an error, as with `kubectl apply --validate=strict`).

usage: k8s_validate.py [--kubernetes-version V] [--crd CRD.yaml]... [--expect-invalid] FILE...

Built-in kinds are checked with kubernetes-validate (PyPI), whose package
carries the JSON schemas made from Kubernetes' OpenAPI document for each
release. Custom resources are checked against the openAPIV3Schema of their
CustomResourceDefinition (--crd), as the API server would check them. A
document of a kind with no schema is an error, not a warning: a manifest that
was never checked must not pass.

Exit 0 when every document is valid. With --expect-invalid (for the checker's
own test), exit 0 when every document is invalid, printing why.
"""
import argparse
import copy
import sys

import jsonschema
import kubernetes_validate.utils as kv
import yaml


def crd_json_schema(schema):
    """An openAPIV3Schema as JSON Schema: `nullable`, int-or-string and
    preserve-unknown-fields made explicit, and unknown fields refused where
    the CRD lists properties."""
    s = copy.deepcopy(schema)
    if s.pop("nullable", False) and "type" in s:
        s["type"] = [s["type"], "null"]
    if s.pop("x-kubernetes-int-or-string", False):
        s.pop("type", None)
        s["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserve = s.pop("x-kubernetes-preserve-unknown-fields", False)
    for key in list(s):
        if key.startswith("x-kubernetes-"):
            del s[key]
    if "properties" in s:
        s["properties"] = {k: crd_json_schema(v) for k, v in s["properties"].items()}
        if not preserve and "additionalProperties" not in s:
            s["additionalProperties"] = False
    if isinstance(s.get("additionalProperties"), dict):
        s["additionalProperties"] = crd_json_schema(s["additionalProperties"])
    if isinstance(s.get("items"), dict):
        s["items"] = crd_json_schema(s["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            s[key] = [crd_json_schema(x) for x in schema[key]]
    return s


def load_crds(paths):
    """(apiVersion, kind) -> JSON Schema, for each served version."""
    schemas = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
                for version in crd["spec"]["versions"]:
                    if version.get("served"):
                        schema = crd_json_schema(version["schema"]["openAPIV3Schema"])
                        # metadata is the API server's ObjectMeta, checked below.
                        schema.get("properties", {}).pop("metadata", None)
                        schema.get("properties", {})["metadata"] = {"type": "object"}
                        schemas[("%s/%s" % (group, version["name"]), kind)] = schema
    return schemas


def check_metadata(doc):
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        return "metadata.name is missing"
    for field in ("labels", "annotations"):
        values = meta.get(field, {})
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            return "metadata.%s must map names to strings" % field
    return None


def problem(doc, version, crds):
    """Why @p doc is invalid, or None."""
    if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
        return "not a Kubernetes object (no apiVersion or kind)"
    key = (doc["apiVersion"], doc["kind"])
    if key in crds:
        why = check_metadata(doc)
        if why:
            return why
        errors = sorted(jsonschema.Draft7Validator(crds[key]).iter_errors(doc),
                        key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            return "%s: %s" % (".".join(str(p) for p in e.path) or "(top)", e.message)
        return None
    try:
        kv.validate(doc, version, strict=True)
    except kv.ValidationError as e:
        return "%s: %s" % (".".join(str(p) for p in e.path) or "(top)", e.message)
    except kv.SchemaNotFoundError:
        return "no schema for %s %s (a custom resource needs --crd)" % key
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubernetes-version", default="1.30")
    ap.add_argument("--crd", action="append", default=[])
    ap.add_argument("--expect-invalid", action="store_true")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    crds = load_crds(args.crd)
    valid = invalid = 0
    for path in args.files:
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        for doc in docs:
            name = "%s %s/%s" % (path, doc.get("kind", "?") if isinstance(doc, dict) else "?",
                                 (doc.get("metadata") or {}).get("name", "?")
                                 if isinstance(doc, dict) else "?")
            why = problem(doc, args.kubernetes_version, crds)
            if why:
                invalid += 1
                print("%s: %s: %s" % ("rejected" if args.expect_invalid else "INVALID", name, why))
            else:
                valid += 1
                print("%s: %s: valid against Kubernetes %s%s" %
                      ("ACCEPTED" if args.expect_invalid else "ok", name, args.kubernetes_version,
                       " and its CRD" if (doc["apiVersion"], doc["kind"]) in crds else ""))
    print("%d valid, %d invalid" % (valid, invalid))
    if args.expect_invalid:
        return 0 if invalid and not valid else 1
    return 0 if valid and not invalid else 1


if __name__ == "__main__":
    sys.exit(main())
