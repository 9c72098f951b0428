# AugFPN Faster R-CNN with this package's extension: an auxiliary RPN loss on the
# laterals M2-M5 (lambda 0.25) next to the paper's consistent supervision of the
# R-CNN head. Everything else as augfpn_faster_rcnn_r50.py.
_base_ = './augfpn_faster_rcnn_r50.py'

model = dict(
    rpn_head=dict(type='ConsistentSupervisionRPNHead', aux_loss_weight=0.25,
                  num_lateral_levels=4))
