# The separately trained ego-only model of the cooperative-visibility tables: the same schedule and
# cooperative labels as collab_coop_mixed.py, no neighbours loaded, nothing sent.
_base_ = ['./collab_coop.py']
model = dict(collab=dict(strategy='none'))
train_dataloader = dict(dataset=dict(load_neighbors=False))
test_dataloader = dict(dataset=dict(load_neighbors=False))
