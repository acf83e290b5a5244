"""mmengine registries of occ.

Children of mmengine's root registries with scope ``occ``; configs set
``default_scope = 'occ'`` so ``dict(type='LiftSplat', ...)`` resolves here.
``locations`` lists the modules imported on first build, so a config never
needs an explicit import.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='occ',
                  locations=['occ.models', 'occ.ops'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='occ',
                    locations=['occ.data'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope='occ',
                      locations=['occ.data'])
FUNCTIONS = Registry('function', parent=MMENGINE_FUNCTIONS, scope='occ',
                     locations=['occ.data'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='occ',
                   locations=['occ.evaluation'])
# parts of OccEvaluator (voxel IoU, RayIoU, forecasting, bytes, visibility regions);
# not an mmengine root registry: OccMetric builds them, the Runner never does
METRIC_PARTS = Registry('metric part', scope='occ', locations=['occ.evaluation'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='occ',
                 locations=['occ.engine'])
