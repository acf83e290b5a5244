"""Occ3D-nuScenes classes, colours and the nuScenes camera rig order.

Class indices follow Occ3D-nuScenes (Tian et al., 2023) and the CVPR 2023
occupancy challenge: 0..16 semantic, 17 free; 255 is ignored by losses.
"""
import numpy as np

CLASS_NAMES = (
    'others', 'barrier', 'bicycle', 'bus', 'car', 'construction_vehicle',
    'motorcycle', 'pedestrian', 'traffic_cone', 'trailer', 'truck',
    'driveable_surface', 'other_flat', 'sidewalk', 'terrain', 'manmade',
    'vegetation', 'free',
)
NUM_CLASSES = len(CLASS_NAMES)          # 18, including free
FREE = 17
IGNORE_INDEX = 255
SEMANTIC_CLASSES = tuple(range(17))     # the classes mIoU averages over (Occ3D)

# Objects that move in the world (used for "moving object" and dynamic-class reports).
DYNAMIC_CLASSES = (2, 3, 4, 5, 6, 7, 9, 10)

# Standard occupancy colour map (RGB), as used by the Occ3D challenge and
# SurroundOcc / TPVFormer visualisations. Index 17 (free) is never drawn.
OCC_COLORS = np.array([
    [0, 0, 0],          # others
    [255, 120, 50],     # barrier
    [255, 192, 203],    # bicycle
    [255, 255, 0],      # bus
    [0, 150, 245],      # car
    [0, 255, 255],      # construction_vehicle
    [200, 180, 0],      # motorcycle
    [255, 0, 0],        # pedestrian
    [255, 240, 150],    # traffic_cone
    [135, 60, 0],       # trailer
    [160, 32, 240],     # truck
    [255, 0, 255],      # driveable_surface
    [139, 137, 137],    # other_flat
    [75, 0, 75],        # sidewalk
    [150, 240, 80],     # terrain
    [230, 230, 250],    # manmade
    [0, 175, 0],        # vegetation
    [255, 255, 255],    # free
], dtype=np.uint8)

# nuScenes surround rig, in the order every tensor with a camera axis uses.
CAMERA_NAMES = (
    'CAM_FRONT_LEFT', 'CAM_FRONT', 'CAM_FRONT_RIGHT',
    'CAM_BACK_LEFT', 'CAM_BACK', 'CAM_BACK_RIGHT',
)
LIDAR_NAME = 'LIDAR_TOP'

# ImageNet statistics used to normalise images (RGB, 0..255 scale).
IMG_MEAN = (123.675, 116.28, 103.53)
IMG_STD = (58.395, 57.12, 57.375)
