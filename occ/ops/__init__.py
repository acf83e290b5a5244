from . import spconv_shim  # noqa: F401  (spconv CPU stream shim, applied once)
from .bev_pool import BEVPoolPlan, BEVPoolPlanCache, bev_pool, build_bev_pool_plan  # noqa: F401
from .deform_sampling import multi_scale_deform_sample  # noqa: F401
