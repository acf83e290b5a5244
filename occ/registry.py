"""mmengine registries of occ.

Children of mmengine's root registries with scope ``occ``; configs set
``default_scope = 'occ'`` so ``dict(type='LiftSplat', ...)`` resolves here.
``locations`` lists the modules imported on first build, so a config never
needs an explicit import. Where mmengine looks a name up in its *root* registry
without the default scope (``collate_fn`` of a dataloader, ``runner_type``),
configs name it with the scope: ``'occ.occ_collate'``, ``'occ.OccRunner'``
(mmengine then imports this module and searches its child).
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import WEIGHT_INITIALIZERS as MMENGINE_WEIGHT_INITIALIZERS
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
DATA_SAMPLERS = Registry('data sampler', parent=MMENGINE_DATA_SAMPLERS, scope='occ',
                         locations=['occ.engine'])
# ``runner_type = 'occ.OccRunner'`` in a config: mmengine's ``RUNNERS.build(cfg)`` (what
# tools/train.py and mmdetection3d-style tools call) finds it here with or without a
# default scope; ``Runner.from_cfg(cfg)`` ignores it and runs the config on a plain Runner.
RUNNERS = Registry('runner', parent=MMENGINE_RUNNERS, scope='occ',
                   locations=['occ.engine'])

# The other registries a Runner builds from. Nothing of occ's lives there; a child per
# registry lets mmengine resolve e.g. 'IterBasedTrainLoop' or 'LocalVisBackend' from scope
# ``occ`` through its parent instead of warning that the scope has no registry.
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, scope='occ')
LOG_PROCESSORS = Registry('log_processor', parent=MMENGINE_LOG_PROCESSORS, scope='occ')
OPTIMIZERS = Registry('optimizer', parent=MMENGINE_OPTIMIZERS, scope='occ')
OPTIM_WRAPPERS = Registry('optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope='occ')
OPTIM_WRAPPER_CONSTRUCTORS = Registry('optimizer wrapper constructor',
                                      parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, scope='occ')
PARAM_SCHEDULERS = Registry('parameter scheduler', parent=MMENGINE_PARAM_SCHEDULERS, scope='occ')
EVALUATOR = Registry('evaluator', parent=MMENGINE_EVALUATOR, scope='occ')
VISUALIZERS = Registry('visualizer', parent=MMENGINE_VISUALIZERS, scope='occ')
VISBACKENDS = Registry('vis_backend', parent=MMENGINE_VISBACKENDS, scope='occ')
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope='occ')
WEIGHT_INITIALIZERS = Registry('weight initializer', parent=MMENGINE_WEIGHT_INITIALIZERS, scope='occ')
