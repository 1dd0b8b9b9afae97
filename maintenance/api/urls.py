from django.urls import path

from maintenance.api.views import MaintenanceJobsView, MaintenanceJobView

app_name = "maintenance"

urlpatterns = [
    path(
        "aggregates/maintenance/scheduler/jobs/orgId/<str:org_id>",
        MaintenanceJobsView.as_view(),
        name="jobs",
    ),
    path(
        "api/1.0/aggregates/maintenance-schedule/jobs/orgId/<str:org_id>/jobId/<str:job_id>",
        MaintenanceJobView.as_view(),
        name="job",
    ),
]
