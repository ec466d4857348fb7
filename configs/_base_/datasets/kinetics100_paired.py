# Kinetics-100, CMN split (64/12/24 classes x 100 videos): RGB + flow.
_base_ = ['./fewshot_paired.py']
data_root = 'data/kinetics100'
train_pipeline = {{_base_.train_pipeline_flip}}


def _split(split):
    return dict(
        ann_file=f'{data_root}/splits/{split}.txt',
        data_prefix=dict(img=f'{data_root}/rawframes'))


train_dataloader = dict(
    dataset=dict(dataset=dict(_split('train'), pipeline=train_pipeline)))
val_dataloader = dict(dataset=dict(dataset=_split('val')))
test_dataloader = dict(dataset=dict(dataset=_split('test')))
