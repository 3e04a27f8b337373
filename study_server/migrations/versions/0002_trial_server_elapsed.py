"""trials.server_elapsed_ms: the server's time from sending a trial to its answer

Revision ID: 0002_server_elapsed
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = '0002_server_elapsed'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('server_elapsed_ms', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.drop_column('server_elapsed_ms')
