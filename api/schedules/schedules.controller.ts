/** `/schedules`: retraining on a schedule (cron or interval), from the latest checkpoint of a model line. */
import { Body, Controller, Delete, Get, HttpCode, Inject, Param, Post } from '@nestjs/common';
import { ApiBearerAuth, ApiTags } from '@nestjs/swagger';
import type { z } from 'zod';
import { ApiBodyFrom, ApiErrors, ApiPathParam, ApiResponseFrom } from '../common/openapi';
import { CreateScheduleBody, ScheduleAction, ScheduleActionBody, ScheduleActionResult, ScheduleId, ScheduleList, ScheduleView } from './schedules.dto';
import { SchedulesService } from './schedules.service';

@ApiTags('schedules')
@ApiBearerAuth()
@Controller('schedules')
export class SchedulesController {
  constructor(@Inject(SchedulesService) private readonly schedules: SchedulesService) {}

  @Post()
  @HttpCode(201)
  @ApiBodyFrom(CreateScheduleBody)
  @ApiResponseFrom(201, ScheduleView, 'The schedule was created')
  @ApiErrors(400, 401, 403, 409, 413, 422)
  create(@Body({ schema: CreateScheduleBody }) body: CreateScheduleBody) {
    return this.schedules.create(body);
  }

  @Get()
  @ApiResponseFrom(200, ScheduleList, 'Schedules')
  @ApiErrors(401)
  list() {
    return this.schedules.list();
  }

  @Get(':id')
  @ApiPathParam('id', ScheduleId)
  @ApiResponseFrom(200, ScheduleView, 'The schedule, its next run times and recent runs')
  @ApiErrors(400, 401, 404)
  get(@Param('id', { schema: ScheduleId }) id: string) {
    return this.schedules.get(id);
  }

  @Post(':id/:action')
  @HttpCode(202)
  @ApiPathParam('id', ScheduleId)
  @ApiPathParam('action', ScheduleAction)
  @ApiBodyFrom(ScheduleActionBody)
  @ApiResponseFrom(202, ScheduleActionResult, 'Done')
  @ApiErrors(400, 401, 403, 404, 409, 422)
  act(
    @Param('id', { schema: ScheduleId }) id: string,
    @Param('action', { schema: ScheduleAction }) action: z.infer<typeof ScheduleAction>,
    @Body({ schema: ScheduleActionBody }) body: z.infer<typeof ScheduleActionBody>,
  ) {
    return this.schedules.act(id, action, body);
  }

  @Delete(':id')
  @HttpCode(204)
  @ApiPathParam('id', ScheduleId)
  @ApiResponseFrom(204, undefined, 'Deleted (runs it started are not affected)')
  @ApiErrors(400, 401, 403, 404)
  async remove(@Param('id', { schema: ScheduleId }) id: string): Promise<void> {
    await this.schedules.delete(id);
  }
}
