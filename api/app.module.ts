/**
 * The API's Nest module: feature controllers (runs, schedules, health, dashboard) over three providers — the
 * validated settings, a plain Temporal `Client` (as in Temporal's NestJS sample) and the `Storage` port — given
 * by whoever builds the app (`createApiApp`), so tests and the CLI choose the servers.
 */
import { type DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER, APP_GUARD, APP_PIPE } from '@nestjs/core';
import { Client } from '@temporalio/client';
import { Storage } from '../storage/types';
import { ApiKeyGuard } from './common/auth';
import { ApiExceptionFilter } from './common/errors';
import { ApiSettings } from './common/settings';
import { SchemaValidationPipe } from './common/validation';
import { DashboardController } from './dashboard/dashboard.controller';
import { HealthController } from './health/health.controller';
import { RequestMetrics } from './health/request-metrics';
import { RunsController } from './runs/runs.controller';
import { RunsService } from './runs/runs.service';
import { SchedulesController } from './schedules/schedules.controller';
import { SchedulesService } from './schedules/schedules.service';

export interface ApiDependencies {
  settings: ApiSettings;
  client: Client;
  storage: Storage;
}

@Module({})
export class ApiModule {
  static with(deps: ApiDependencies): DynamicModule {
    return {
      module: ApiModule,
      controllers: [RunsController, SchedulesController, HealthController, DashboardController],
      providers: [
        { provide: ApiSettings, useValue: deps.settings },
        { provide: Client, useValue: deps.client },
        { provide: Storage, useValue: deps.storage },
        RequestMetrics,
        RunsService,
        SchedulesService,
        { provide: APP_GUARD, useClass: ApiKeyGuard },
        { provide: APP_PIPE, useClass: SchemaValidationPipe },
        { provide: APP_FILTER, useClass: ApiExceptionFilter },
      ],
    };
  }
}
