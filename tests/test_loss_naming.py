"""One loss-naming rule (occ.models.losses.naming) for heads and any other part that builds losses."""
import occ.models  # noqa: F401  (registers parts)
from occ.models.losses import FocalLoss, WeightedCELoss, build_named_losses, loss_key


def test_loss_key_splits_camel_case_and_takes_a_prefix():
    assert loss_key('WeightedCELoss') == 'loss_weighted_ce'
    assert loss_key('SigmoidFocalLoss') == 'loss_sigmoid_focal'
    assert loss_key('WeightedCELoss', prefix='loss_rec') == 'loss_rec_weighted_ce'
    assert loss_key('Dice') == 'loss_dice'


def test_build_named_losses_explicit_names_and_repeats():
    names, mods = build_named_losses([dict(type='FocalLoss'), dict(type='FocalLoss', gamma=1.0),
                                      dict(type='WeightedCELoss', name='loss_ce')], prefix='loss_occ')
    assert names == ['loss_occ_focal', 'loss_occ_focal_1', 'loss_ce']
    assert [type(m) for m in mods] == [FocalLoss, FocalLoss, WeightedCELoss]
    assert build_named_losses(None)[0] == [] and len(build_named_losses(None)[1]) == 0
