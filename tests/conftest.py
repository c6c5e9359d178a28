import os

import matplotlib
from hypothesis import HealthCheck, settings

matplotlib.use("Agg")

# A fixed derandomised profile for CI, so a red run can be reproduced exactly;
# locally, hypothesis explores new examples each run.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")
