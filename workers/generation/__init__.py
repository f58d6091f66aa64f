"""One generation's parts, run in order by `workers.chat.generate` (workers/tasks/chat.py):
claim it, build its provider request, stream the reply into `gen:{id}`, store its end."""
