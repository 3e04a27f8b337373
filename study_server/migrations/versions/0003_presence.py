"""served_images (what the server sent each participant), the answer's webdriver and input, the review mark

Revision ID: 0003_presence
Revises: 0002_server_elapsed
"""
import sqlalchemy as sa
from alembic import op

revision = '0003_presence'
down_revision = '0002_server_elapsed'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'served_images',
        sa.Column('participant_id', sa.Integer(), nullable=False),
        sa.Column('token', sa.String(length=32), nullable=False),
        sa.Column('served_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['participant_id'], ['participants.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('participant_id', 'token'),
    )
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.add_column(sa.Column('webdriver', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('answer_input', sa.String(length=8), nullable=True))
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('review', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.drop_column('review')
    with op.batch_alter_table('trials', schema=None) as batch_op:
        batch_op.drop_column('answer_input')
        batch_op.drop_column('webdriver')
    op.drop_table('served_images')
