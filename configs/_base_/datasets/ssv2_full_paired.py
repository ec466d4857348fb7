# SSv2-full, OTAM split (64/12/24 classes; lines trainK/<id>): RGB + flow.
_base_ = ['./fewshot_paired.py']
data_root = 'data/ssv2_full'


def _split(split):
    return dict(
        ann_file=f'{data_root}/splits/{split}.txt',
        data_prefix=dict(img=f'{data_root}/rawframes'))


train_dataloader = dict(dataset=dict(dataset=dict(_split('train'))))
val_dataloader = dict(dataset=dict(dataset=_split('val')))
test_dataloader = dict(dataset=dict(dataset=_split('test')))
