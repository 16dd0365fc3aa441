"""What docker-compose.yml promises its users, checked without a Docker engine (the
Compose specification's schema is checked separately, by check-jsonschema):

- Redpanda has an internal listener for the containers and an external one that
  host clients reach at localhost:19092;
- Redpanda, ScyllaDB and the pipeline keep their data in named volumes;
- every long-running service has a healthcheck, and every dependency waits for the
  health (or the successful end) of what it depends on;
- the Redpanda Console is there, pointed at the internal listener;
- images are pinned to a version (no `latest` tag of a base image).

Prints one line per check and exits non-zero on the first failure.
"""

import sys

from ruamel.yaml import YAML

compose = YAML(typ="safe").load(open(sys.argv[1] if len(sys.argv) > 1 else "docker-compose.yml"))
services = compose["services"]
checks = 0


def check(ok, what):
    global checks
    checks += 1
    if not ok:
        sys.exit(f"docker-compose.yml: {what}")


redpanda = " ".join(services["redpanda"]["command"])
check("external://0.0.0.0:19092" in redpanda, "Redpanda listens externally on 19092")
check("external://localhost:19092" in redpanda, "Redpanda advertises localhost:19092")
check("internal://redpanda:9092" in redpanda, "Redpanda advertises redpanda:9092 inside")
check(any(p.endswith(":19092:19092") or p == "19092:19092" for p in services["redpanda"]["ports"]),
      "port 19092 published")

volumes = set(compose.get("volumes", {}))
for name, mount in [("redpanda", "/var/lib/redpanda/data"), ("scylla", "/var/lib/scylla"),
                    ("processor", "/data"), ("compactor", "/data"), ("dashboard", "/data")]:
    mounted = {v.split(":")[1]: v.split(":")[0] for v in services[name].get("volumes", [])}
    check(mount in mounted and mounted[mount] in volumes, f"{name} keeps {mount} in a named volume")

for name, service in services.items():
    health = service.get("healthcheck", {})
    one_shot = service.get("restart") == "no"
    check(one_shot or ("test" in health and not health.get("disable")), f"{name} has a healthcheck")
    for dep, how in (service.get("depends_on") or {}).items():
        wanted = "service_completed_successfully" if services[dep].get("restart") == "no" else "service_healthy"
        check(how.get("condition") == wanted, f"{name} waits for {dep} to be {wanted}")
    image = service.get("image", "")
    check(image and not image.endswith(":latest") or "build" in service, f"{name}'s image is pinned")

for name, service in services.items():
    command = " ".join(service.get("command") or [])
    if "serve" in command and "0.0.0.0" in command:
        check("PIPELINE_DASHBOARD_TOKEN" in (service.get("environment") or {}),
              f"{name} serves off loopback, so it is given a token")

console = services.get("console")
check(console is not None, "the Redpanda Console is a service")
check(console["environment"].get("KAFKA_BROKERS") == "redpanda:9092", "the Console reads redpanda:9092")

# The image: pinned bases, dependencies cooked in a layer before the sources come in,
# a non-root user at run time.
import re

docker = open("Dockerfile").read().splitlines()
froms = [l.split()[1] for l in docker if l.startswith("FROM ")]
for base in froms:
    if base in ("chef", "planner", "build"):
        continue
    check(re.search(r":\d+\.\d+", base), f"Dockerfile: base image {base} pinned to a version")
build = docker[next(i for i, l in enumerate(docker) if l.startswith("FROM chef AS build")):]
cook = next(i for i, l in enumerate(build) if "cargo chef cook" in l)
sources = next(i for i, l in enumerate(build) if l.startswith("COPY . ."))
check(cook < sources, "Dockerfile: dependencies built before the sources are copied")
users = [l.split()[1] for l in docker if l.startswith("USER ")]
check(users and users[-1] not in ("root", "0"), "Dockerfile: runs as a non-root user")
print(f"docker-compose.yml and Dockerfile: {checks} checks passed")
